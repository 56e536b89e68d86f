"""The loop on real benchmark data: GSM8K from ../shared/data through every stage with the tiny scratch model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rft_helpers.recipes import load_config
from rft_helpers.io import read_jsonl
from rft_helpers.pipeline import run_pipeline

from conftest import needs_shared_data

RECIPE = Path(__file__).resolve().parent.parent / "params" / "gsm8k_tiny.yaml"


@needs_shared_data
@pytest.mark.slow
def test_gsm8k_recipe_loads_prompts_scores_and_evaluates(tmp_path):
    config = load_config(RECIPE, ["task.num_train=32", "task.num_test=8", "task.seed_size=8", "warmup.max_steps=2",
                                  "sample.num_questions=4", "sample.n=2", "sample.max_new_tokens=48",
                                  "train.max_steps=1", "eval.max_new_tokens=48", "eval.samples=2"])
    run = run_pipeline(config, tmp_path / "run", log=lambda m: None)

    test = read_jsonl(run.data_dir / "test.jsonl")
    assert test[0]["answer"] == "18" and "<<" not in test[0]["solution"]  # GSM8K's first test question
    samples = read_jsonl(run.iter_dir(1) / "samples.jsonl")
    assert len(samples) == 8
    assert samples[0]["prompt"][0] == {"role": "system", "content": "Solve the problem step by step. Put the final answer in \\boxed{}."}
    scored = read_jsonl(run.iter_dir(1) / "scored.jsonl")
    assert all(r["rewards"]["exact_answer"] in (0.0, 1.0) and "reject_reason" in r for r in scored)
    metrics = run.metrics(1)
    assert metrics["eval"]["n"] == 8 and {"maj@2", "pass@1", "pass@2"} <= set(metrics["eval"])
    assert (run.dir / "06_report.ipynb").exists()
