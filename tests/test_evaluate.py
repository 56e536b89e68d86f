import pytest

from rft_helpers.evaluate import accuracy_summary, majority_vote, pass_at_k, sampled_summary


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(n=10, c=0, k=1) == 0.0
    assert pass_at_k(n=10, c=10, k=5) == 1.0
    assert pass_at_k(n=10, c=3, k=1) == pytest.approx(0.3)
    assert pass_at_k(n=4, c=1, k=2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(n=5, c=2, k=4) == 1.0  # fewer wrong samples than k


def test_majority_vote_ignores_missing_answers():
    assert majority_vote(["3", None, "4", "3", None, None]) == "3"
    assert majority_vote([None, None]) is None


def test_accuracy_by_group():
    preds = [{"correct": True, "kind": "+ 2-digit"}, {"correct": False, "kind": "+ 3-digit"},
             {"correct": True, "kind": "+ 2-digit"}, {"correct": False, "kind": "+ 2-digit"}]
    summary = accuracy_summary(preds)
    assert summary["accuracy"] == 0.5 and summary["by_kind"]["+ 2-digit"] == {"accuracy": 2 / 3, "n": 3}
    assert summary["by_kind"]["+ 3-digit"] == {"accuracy": 0.0, "n": 1} and "by_level" not in summary


def test_accuracy_summary():
    assert accuracy_summary([{"correct": True}, {"correct": False}]) == {"accuracy": 0.5, "n": 2, "correct": 1}


def test_second_set_is_evaluated_at_the_ends_with_its_solution_loss(smoke_config, tmp_path):
    from rft_helpers.io import read_jsonl, write_jsonl
    from rft_helpers.report import second_set_table
    from rft_helpers.run import Run
    from rft_helpers.stages import evaluate

    source = tmp_path / "other.jsonl"
    write_jsonl(source, [{"question": f"{i}+{i}=?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"} for i in range(1, 6)])
    config = smoke_config.model_copy(deep=True)
    config.iterations = 2
    config.eval.second_set = {"name": "other", "path": str(source), "num_questions": 4, "max_new_tokens": 8}
    config.eval.num_questions = 4
    run = Run.create(config, tmp_path / "run")
    assert [r["answer"] for r in read_jsonl(run.data_dir / "other.jsonl")] == ["2", "4", "6", "8"]  # copied once

    results = evaluate.run_stage(run, 0, run.config.stage_config("eval", 0), progress=False)
    other = run.metrics(0)["eval_other"]
    assert other["n"] == 4 and 0 < other["solution_loss"] < 20
    assert run.metrics(0)["baseline_eval_other"] == other  # iteration 0: one model for both
    assert len(read_jsonl(run.iter_dir(0) / "predictions_other.jsonl")) == 4
    assert "eval_other" in results

    evaluate.run_stage(run, 1, run.config.stage_config("eval", 1), progress=False)  # neither first nor last
    assert "eval_other" not in run.metrics(1)
    table = second_set_table(run)
    assert list(table["iteration"]) == [0] and table.loc[0, "solution_loss"] == other["solution_loss"]


def test_solution_loss_is_the_mean_token_loss_of_the_solutions(tiny_model_dir):
    import torch

    from rft_helpers.data import build_prompt
    from rft_helpers.evaluate import solution_loss
    from rft_helpers.models import load_model, load_tokenizer
    from rft_helpers.sampling import encode_chat

    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    rows = [{"question": "1+1=?", "solution": "1+1=2\nAnswer: 2"}, {"question": "12+34=?", "solution": "Answer: 46"}]
    total, count = 0.0, 0
    for row in rows:  # one row at a time, no padding, the full logits
        prompt = build_prompt(row["question"])
        full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": row["solution"]}], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        start = len(encode_chat(tokenizer, [prompt])[0])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        total += torch.nn.functional.cross_entropy(logits[start - 1 : -1], torch.tensor(ids[start:]), reduction="sum").item()
        count += len(ids) - start
    assert abs(solution_loss(model, tokenizer, rows, None, batch_size=2) - total / count) < 1e-4


def test_sampled_summary_gives_maj_at_k_and_pass_at_k():
    predictions = [
        {"correct": [True, False, False, False], "majority_correct": False},  # one right answer, outvoted
        {"correct": [True, True, True, False], "majority_correct": True},
        {"correct": [False] * 4, "majority_correct": False},
    ]
    summary = sampled_summary(predictions)
    assert set(summary) == {"maj@4", "pass@1", "pass@2", "pass@4"}
    assert summary["maj@4"] == pytest.approx(1 / 3)
    assert summary["pass@1"] == pytest.approx((0.25 + 0.75 + 0) / 3)
    assert summary["pass@4"] == pytest.approx(2 / 3)
    assert summary["pass@2"] == pytest.approx((pass_at_k(4, 1, 2) + pass_at_k(4, 3, 2)) / 3)


def test_evaluate_stage_samples_for_maj_and_pass_at_k(smoke_config, tmp_path):
    from rft_helpers.io import read_jsonl
    from rft_helpers.run import Run
    from rft_helpers.stages import evaluate

    config = smoke_config.model_copy(deep=True)
    config.eval.num_questions, config.eval.samples, config.eval.temperature = 6, 4, 1.0
    run = Run.create(config, tmp_path / "run")
    evaluate.run_stage(run, 0, run.config.stage_config("eval", 0), progress=False)
    metrics = run.metrics(0)["eval"]
    sampled = read_jsonl(run.iter_dir(0) / "sampled_predictions.jsonl")
    assert len(sampled) == 6 and all(len(p["answers"]) == len(p["correct"]) == 4 for p in sampled)
    assert metrics["pass@1"] == pytest.approx(sum(sum(p["correct"]) for p in sampled) / 24)
    assert metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"] and 0 <= metrics["maj@4"] <= metrics["pass@4"]
    for p in sampled:  # the majority is the most common extracted answer, right when any sample with it is right
        if p["majority"] is not None:
            assert p["answers"].count(p["majority"]) == max(p["answers"].count(a) for a in p["answers"] if a)


def test_equivalent_answers_vote_together():
    # 1/2 in three forms outvotes 3, which is the most common single string
    assert majority_vote(["3", "0.5", "3", "1/2", "\\frac{1}{2}"]) in {"0.5", "1/2", "\\frac{1}{2}"}
    assert majority_vote(["7", "x = 7", "8", "8"]) == "7"  # 7 and x = 7 tie with 8: the group seen first wins
    assert majority_vote([None, None]) is None


def test_answers_are_judged_by_the_eval_reward_which_defaults_to_the_filters(smoke_config, tmp_path, monkeypatch):
    """A custom reward judges the test answers as it judges the samples: here one that accepts every answer."""
    from rft_helpers.io import read_jsonl
    from rft_helpers.run import Run
    from rft_helpers.stages import evaluate

    (tmp_path / "lenient.py").write_text(
        "def reward(completions, answer, **kwargs):\n    return [1.0 for _ in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = smoke_config.model_copy(deep=True)
    config.eval.num_questions = 4
    config.filter.reward = "lenient.reward"  # eval.reward is None: the filter's
    run = Run.create(config, tmp_path / "run")
    stage_config = run.config.stage_config("eval", 0)
    assert stage_config.reward == "lenient.reward"
    assert evaluate.run_stage(run, 0, stage_config, progress=False)["eval"]["accuracy"] == 1.0
    assert {(p["reward"], p["correct"]) for p in read_jsonl(run.iter_dir(0) / "predictions.jsonl")} == {(1.0, True)}

    stage_config.reward = "exact_answer"  # eval.reward set: the tiny untrained model gets nothing right
    assert evaluate.run_stage(run, 0, stage_config, progress=False)["eval"]["accuracy"] == 0.0
