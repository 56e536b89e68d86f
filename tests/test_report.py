import matplotlib

matplotlib.use("Agg")

from rft_helpers.config import RunConfig
from rft_helpers.io import write_json, write_jsonl
from rft_helpers.report import answers_by_iteration, kept_and_rejected, plot_accuracy, run_summary, samples_table
from rft_helpers.run import Run


def _row(qid, completion, kept=None):
    row = {"id": qid, "prompt": [{"role": "user", "content": f"{qid}?"}], "completion": completion, "answer": "1"}
    return row | ({"kept": kept, "rewards": {"r": float(kept)}, "extracted_answer": "1", "reject_reason": None if kept else "low_reward"} if kept is not None else {})


def test_samples_tables():
    rows = [_row("a", "x"), _row("a", "y"), _row("a", "z"), _row("b", "w")]
    assert list(samples_table(rows, k=3, per_question=2)["completion"]) == ["x", "y", "w"]
    assert list(samples_table(rows, k=2)["question"]) == ["a?", "a?"]
    scored = [_row("a", "x", kept=False), _row("a", "y", kept=True), _row("b", "w", kept=True)]
    assert list(kept_and_rejected(scored, k=1)["kept"]) == [True, False]


def test_run_summary_and_answers_by_iteration(tmp_path):
    config = RunConfig(iterations=2)
    write_json(tmp_path / "run.json", {"config": config.model_dump(mode="json"), "stages": {}})
    run = Run(tmp_path)
    for i, (acc, base) in enumerate([(0.2, 0.2), (0.5, 0.3)]):
        run.update_metrics(i, "eval", {"accuracy": acc})
        run.update_metrics(i, "baseline_eval", {"accuracy": base})
        write_jsonl(run.iter_dir(i) / "predictions.jsonl",
                    [{"question": "1+1=?", "answer": "2", "completion": f"1+1={i + 1}", "extracted_answer": str(i + 1),
                      "correct": i == 1}])
    run.update_metrics(1, "filter", {"kept": 5, "kept_ratio": 0.25})
    summary = run_summary(run)  # iteration 2 has no evaluation yet: not listed
    assert list(summary["iteration"]) == [0, 1] and list(summary["accuracy"]) == [0.2, 0.5]
    assert summary.loc[1, "kept_ratio"] == 0.25
    assert list(answers_by_iteration(run).iloc[0]) == ["1+1=?", "2", "✗ 1+1=1", "✓ 1+1=2"]
    ax = plot_accuracy(summary)
    assert [line.get_label() for line in ax.get_lines()][:2] == ["RFT", "baseline: SFT on seed set, same steps"]


def test_accuracy_by_group_and_second_set_table(tmp_path):
    from rft_helpers.report import accuracy_by_group, second_set_table

    config = RunConfig(iterations=1, eval={"second_set": {"name": "gsm8k", "path": "x.jsonl"}})
    write_json(tmp_path / "run.json", {"config": config.model_dump(mode="json"), "stages": {}})
    run = Run(tmp_path)
    for i, acc in enumerate([0.1, 0.4]):
        run.update_metrics(i, "eval", {"accuracy": acc, "by_kind": {"+ 2-digit": {"accuracy": acc, "n": 5},
                                                                    "x 1-digit": {"accuracy": acc / 2, "n": 3}}})
        run.update_metrics(i, "eval_gsm8k", {"accuracy": 0.01, "n": 100, "solution_loss": 1.5 + i})
        run.update_metrics(i, "baseline_eval_gsm8k", {"accuracy": 0.02, "n": 100, "solution_loss": 1.5 + 2 * i})
    table = accuracy_by_group(run)
    assert list(table.columns) == ["iter_00", "n", "iter_01"] and table.loc["x 1-digit", "iter_01"] == 0.2
    forgetting = second_set_table(run)
    assert list(forgetting["solution_loss"]) == [1.5, 2.5] and list(forgetting["baseline_solution_loss"]) == [1.5, 3.5]
    assert accuracy_by_group(run, "level").empty


def test_compare_runs_puts_training_modes_side_by_side(tmp_path):
    from rft_helpers.config import config_from_dict
    from rft_helpers.report import compare_runs

    for name, algorithm, accuracies in [("sft", "sft", (0.2, 0.6)), ("grpo", "grpo", (0.2, 0.4))]:
        config = config_from_dict({"iterations": 1, "train": {"algorithm": algorithm}})
        write_json(tmp_path / name / "run.json", {"config": config.model_dump(mode="json"),
                                                  "stages": {"a": {"seconds": 60}, "b": {"seconds": 30}}})
        run = Run(tmp_path / name)
        for i, acc in enumerate(accuracies):
            run.update_metrics(i, "eval", {"accuracy": acc})
        if algorithm == "sft":
            run.update_metrics(1, "sampling", {"samples": 800})
        else:  # GRPO samples inside its trainer
            run.update_metrics(1, "train", {"mode": "grpo", "samples_drawn": 800})
    table = compare_runs([tmp_path / "sft", tmp_path / "grpo"])
    assert list(table["algorithm"]) == ["sft", "grpo"] and list(table["acc_iter_01"]) == [0.6, 0.4]
    assert list(table["samples_drawn"]) == [800, 800] and list(table["minutes"]) == [1.5, 1.5]
    assert [round(g, 2) for g in table["gain"]] == [0.4, 0.2]
