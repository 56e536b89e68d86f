"""Experiment trackers: the pipeline's per-iteration metrics and sample answers, logged for real to TensorBoard
(read back with tensorboard's reader), to wandb in its offline mode and to a local MLflow file store."""

from __future__ import annotations

import importlib.util

import pytest

from rft_helpers.config import RunConfig
from rft_helpers.exceptions import ConfigError
from rft_helpers.io import read_json, write_json, write_jsonl
from rft_helpers.run import Run
from rft_helpers import tracking


def _evaluated_run(tmp_path, report_to):
    config = RunConfig(iterations=1, run_name="tracked", tracking={"report_to": report_to, "samples_logged": 2})
    write_json(tmp_path / "run.json", {"config": config.model_dump(mode="json"), "stages": {}})
    run = Run(tmp_path)
    for i, acc in enumerate([0.25, 0.5]):
        run.update_metrics(i, "eval", {"accuracy": acc, "n": 4, "maj@4": acc + 0.1})
        run.update_metrics(i, "timing_s", {"05_evaluate": 3.0})
        write_jsonl(run.iter_dir(i) / "predictions.jsonl", [
            {"question": f"{q}+1=?", "answer": str(q + 1), "completion": f"{q}+1={q + 1}", "correct": True}
            for q in range(3)])
    run.update_metrics(1, "filter", {"kept": 7, "kept_ratio": 0.4375, "by_reason": {"wrong": 9}})
    return run


def test_iteration_scalars_flatten_numbers_only():
    scalars = tracking.iteration_scalars({"eval": {"accuracy": 0.5, "by_kind": {"+": {"accuracy": 0.4}}},
                                          "train": {"loss_history": [1.0], "mode": "sft", "merged": True}})
    assert scalars == {"eval/accuracy": 0.5, "eval/by_kind/+/accuracy": 0.4}


def test_tensorboard_holds_each_iterations_accuracy_and_a_table_of_answers(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _evaluated_run(tmp_path, ["tensorboard"])
    assert tracking.log_iteration(run, 0) == ["tensorboard"]
    assert tracking.log_iteration(run, 1) == ["tensorboard"]
    assert tracking.log_iteration(run, 1) == []  # a resumed run logs an iteration once
    scalars = tracking.tensorboard_scalars(run.dir / "tensorboard" / "rft")
    assert scalars["eval/accuracy"] == [(0, 0.25), (1, 0.5)]
    assert scalars["filter/kept"] == [(1, 7.0)] and scalars["iteration/total_seconds"] == [(0, 3.0), (1, 3.0)]
    events = EventAccumulator(str(run.dir / "tensorboard" / "rft"), size_guidance={"tensors": 0})
    events.Reload()
    table = events.Tensors("test_answers/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "| question | answer | reference | correct |" in table and "1+1=2" in table and "2+1" not in table
    assert read_json(run.dir / "tracking.json")["logged"] == [0, 1]


def test_trainers_are_pointed_at_the_runs_tracker_run(tmp_path):
    run = _evaluated_run(tmp_path, ["tensorboard", "wandb"])
    variables = tracking.tracker_variables(run, run.config.tracking, 1, "policy")
    assert variables["TENSORBOARD_LOGGING_DIR"] == str(run.dir / "tensorboard" / "iter_01" / "policy")
    assert variables["WANDB_RUN_ID"] == tracking.run_id(run) and variables["WANDB_RESUME"] == "allow"
    assert (variables["WANDB_PROJECT"], variables["WANDB_NAME"]) == ("rft", "tracked")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed (pip install wandb)")
def test_wandb_offline_logs_one_run_per_rft_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = _evaluated_run(tmp_path, ["wandb"])
    tracking.log_iteration(run, 0)
    tracking.log_iteration(run, 1)
    runs = sorted((run.dir / "wandb").glob(f"offline-run-*-{tracking.run_id(run)}"))
    assert len(runs) == 2 and all((r / f"run-{tracking.run_id(run)}.wandb").is_file() for r in runs)


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed (pip install mlflow)")
def test_mlflow_file_store_holds_each_iterations_accuracy(tmp_path, monkeypatch):
    import mlflow

    store = (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run = _evaluated_run(tmp_path / "run", ["mlflow"])
    tracking.log_iteration(run, 0)
    tracking.log_iteration(run, 1)
    run_id = read_json(run.dir / "tracking.json")["mlflow_run_id"]
    client = mlflow.MlflowClient(store)
    history = client.get_metric_history(run_id, "eval/accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.25), (1, 0.5)]
    assert client.get_metric_history(run_id, "eval/maj_at_4")[-1].value == 0.6
    assert client.get_run(run_id).info.run_name == "tracked"
    assert tracking.tracker_variables(run, run.config.tracking, 1, "policy")["MLFLOW_RUN_ID"] == run_id


def test_a_tracker_that_is_not_installed_is_one_line_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^tracking.report_to: wandb is not installed; pip install wandb"):
        tracking.check_installed(["tensorboard", "wandb"])
    with pytest.raises(ConfigError, match="report_to"):
        from rft_helpers import preflight
        preflight.check(RunConfig(tracking={"report_to": ["wandb"]}))
