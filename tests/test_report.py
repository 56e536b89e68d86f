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
    assert list(kept_and_rejected(scored, k=1)["kept"]) == ["✓", "✗"]
    table = kept_and_rejected(scored, k=1)
    assert list(table["answer"]) == ["✓", "✗"] and list(table["reward: r"]) == [1.0, 0.0]
    assert list(table["reject_reason"]) == ["", "low_reward"]  # a kept row has no reason, not NaN


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
    assert list(answers_by_iteration(run).data.iloc[0]) == ["1+1=?", "2", "✗ 1+1=1", "✓ 1+1=2"]
    assert "color: #1a7f37" in answers_by_iteration(run).to_html()  # ✓ in green
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


def _finished_run(tmp_path, accuracies=((0.2, 0.2), (0.5, 0.3), (0.7, 0.35)), **config):
    config = RunConfig(iterations=len(accuracies) - 1, run_name="shared", **config)
    stages = {f"iter_{i:02d}/05_evaluate": {"status": "done", "seconds": 30.0} for i in range(len(accuracies))}
    write_json(tmp_path / "run.json", {"config": config.model_dump(mode="json"), "stages": stages,
                                       "best": {"iteration": 2, "accuracy": 0.7,
                                                "checkpoint": str(tmp_path.resolve() / "iter_02" / "checkpoint")}})
    run = Run(tmp_path)
    for i, (acc, base) in enumerate(accuracies):
        run.update_metrics(i, "eval", {"accuracy": acc})
        if i:
            run.update_metrics(i, "baseline_eval", {"accuracy": base})
            run.update_metrics(i, "filter", {"kept": 120, "kept_ratio": 0.125})
    return run


def test_the_headline_reads_the_run_folder(tmp_path):
    from rft_helpers.report import headline, headline_markdown

    run = _finished_run(tmp_path)
    h = headline(run)
    assert (h["run"], h["final_iteration"], h["final_accuracy"], h["baseline_accuracy"]) == ("shared", 2, 0.7, 0.35)
    assert round(h["gain"], 3) == 0.5 and round(h["gain_over_baseline"], 3) == 0.35
    assert (h["best_iteration"], h["best_checkpoint"], h["wall_seconds"]) == (2, "iter_02/checkpoint", 90.0)
    text = headline_markdown(run)
    assert "**70.0%** at iteration 2" in text and "+50.0 points" in text and "+35.0 points" in text
    assert "2 of 2 iterations done" in text and text._repr_markdown_() == str(text)


def test_the_summary_table_is_formatted_with_gains_and_no_empty_columns(tmp_path):
    from rft_helpers.report import accuracy_table

    html = accuracy_table(run_summary(_finished_run(tmp_path))).to_html()
    assert "70.0%" in html and "+50.0 pts" in html and "+35.0 pts" in html  # accuracy, gain, vs baseline
    assert "120" in html and "12.5%" in html and "120.0" not in html and "0.125" not in html
    assert "–" in html  # iteration 0 has no baseline or kept count: a dash, not NaN
    assert "nan" not in html.lower() and "prm_step_auroc" not in html  # a column no iteration has is left out


def test_empty_sections_say_why_and_settings_fold_unused_sections(tmp_path):
    from rft_helpers.report import Note, second_set_table, section, settings_html

    run = _finished_run(tmp_path)
    note = section(second_set_table(run), "No eval.second_set in this recipe.")
    assert isinstance(note, Note) and note._repr_markdown_() == "*No eval.second_set in this recipe.*"
    html = settings_html(run)
    assert "<details><summary>openai (not used by this run)</summary>" in html
    assert "<details><summary>sample" not in html and "run_name: shared" in html


def test_loss_note_says_what_the_numbers_say():
    from rft_helpers.report import loss_note

    assert "fell" in loss_note({"mode": "warmup", "loss_history": [2.0] * 10 + [1.0] * 10})
    rose = loss_note({"mode": "sft", "loss_history": [0.094] * 10 + [0.115] * 10})
    assert "rose" in rose and "0.094" in rose and "0.115" in rose and "fell" not in rose
    assert loss_note({"mode": "skipped", "reason": "no sft data"}) == "Nothing was trained: no sft data."


def test_plots_mark_the_length_cap_and_bin_solve_rates_by_what_is_possible():
    from rft_helpers.report import plot_completion_lengths, plot_solve_rate

    rows = [{"completion_tokens": t} for t in (3, 5, 8, 8)]
    ax = plot_completion_lengths(rows, max_new_tokens=8)
    assert any(line.get_xdata()[0] == 8 for line in ax.get_lines())
    assert "2 of 4 samples reach it" in ax.get_legend().get_texts()[0].get_text()
    scored = [{"id": q, "rewards": {"r": float(k < ok)}} for q, ok in (("a", 0), ("b", 2), ("c", 4)) for k in range(4)]
    ax = plot_solve_rate(scored, "r")
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 5 and heights == [1, 0, 1, 0, 1]  # 0, 1/4, ..., 1: one bar per possible rate


TEST_TIME_COMPUTE = {  # the shape bench/test_time_compute.py prints and writes
    "questions": 100, "policy": "iter_00/checkpoint", "aggregation": "min", "greedy": {"accuracy": 0.36, "tokens": 2500},
    "monte_carlo_prm": {"majority": {"4": {"accuracy": 0.32, "tokens": 10000}, "16": {"accuracy": 0.37, "tokens": 41000}},
                        "best_of_n": {"16": {"accuracy": 0.26, "tokens": 40000}, "4": {"accuracy": 0.21, "tokens": 9900}}},
    "checker_prm": {"weighted_best_of_n": {"4": {"accuracy": 0.38, "tokens": 9800}}},
    "beam_over_best_of_n_wall_at_16": 1.5,
}


def test_the_test_time_compute_bench_plots_one_panel_per_prm(tmp_path):
    import json

    import pytest

    from rft_helpers.exceptions import DataError
    from rft_helpers.report import load_test_time_compute, plot_test_time_compute_result

    log = tmp_path / "bench.log"  # the bench's printed log: progress lines, then the object
    log.write_text("monte_carlo_prm majority 4 {...}\n" + json.dumps(TEST_TIME_COMPUTE) + "\n")
    result = load_test_time_compute(log)
    axes = plot_test_time_compute_result(result).figure.axes
    assert [ax.get_title() for ax in axes] == ["PRM from Monte Carlo rollouts", "PRM from the checker's labels"]
    lines = {(ax.get_title(), line.get_label()): line for ax in axes for line in ax.get_lines()}
    best_of_n = lines["PRM from Monte Carlo rollouts", "best of n"]
    assert list(best_of_n.get_xdata()) == [9900, 40000] and list(best_of_n.get_ydata()) == [0.21, 0.26]  # by tokens
    majority = lines["PRM from the checker's labels", "majority"]  # no PRM: drawn beside each PRM's strategies
    assert list(majority.get_ydata()) == [0.32, 0.37]
    assert list(lines["PRM from the checker's labels", "greedy"].get_ydata()) == [0.36, 0.36]
    assert ("PRM from the checker's labels", "best of n") not in lines

    with pytest.raises(DataError, match=f"^{tmp_path / 'missing.json'}: no such file"):
        load_test_time_compute(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(DataError, match="other.json: its last line is not bench/test_time_compute.py's JSON"):
        load_test_time_compute(tmp_path / "other.json")


def test_the_report_notebook_draws_the_test_time_compute_file_it_is_given(smoke_run, tmp_path):
    import json
    import shutil

    import papermill as pm

    from rft_helpers.paths import NOTEBOOKS_DIR

    run_dir = shutil.copytree(smoke_run.dir, tmp_path / "run")  # a copy: the session's smoke run stays as it was
    result = tmp_path / "test_time_compute.json"
    result.write_text(json.dumps(TEST_TIME_COMPUTE) + "\n")
    out = tmp_path / "06_report.ipynb"

    def section_outputs(**parameters):
        pm.execute_notebook(str(NOTEBOOKS_DIR / "06_report.ipynb"), str(out), cwd=str(NOTEBOOKS_DIR),
                            parameters={"run_dir": str(run_dir), **parameters}, kernel_name="python3",
                            progress_bar=False)
        cells = json.loads(out.read_text())["cells"]
        return next(c["outputs"] for c in cells if "load_test_time_compute" in "".join(c["source"]))

    assert any("image/png" in o.get("data", {}) for o in section_outputs(test_time_compute=str(result)))
    empty = json.dumps(section_outputs())
    assert "No test-time compute to show" in empty and "image/png" not in empty
