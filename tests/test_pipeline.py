"""The papermill pipeline: mechanics on tiny fixture notebooks, then the real notebooks on the smoke recipe."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from rft_helpers.config import STAGE_CONFIGS
from rft_helpers.recipes import load_config
from rft_helpers.exceptions import ConfigError, StageFailed
from rft_helpers.io import read_json, read_jsonl
from rft_helpers.pipeline import STAGES, plan, run_pipeline, stage_parameters
from rft_helpers.run import STAGE_NOTEBOOKS, Run

# What each fixture notebook declares: its stage config's fields, from config.py (as the real notebooks do)
PARAMS = {notebook: " ".join(STAGE_CONFIGS[section].model_fields) for section, notebook in STAGE_NOTEBOOKS.items()}
PARAMS["06_report"] = ""
WITHOUT_PRM = [s for s in STAGES if s != "02_prm"]  # an iteration that trains no PRM


def fixture_notebooks(folder: Path, body: dict[str, str] | None = None, declare_all: bool = True) -> Path:
    """Stage notebooks that only record that they ran; `body` replaces a stage's code (e.g. to fail)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, names in PARAMS.items():
        declared = ["run_dir = ''", "params_file = ''"] + ([] if name == "06_report" else ["iteration = 0"])
        declared += [f"{p} = None" for p in names.split() if declare_all or p != "n"]
        code = (body or {}).get(name, "import pathlib; pathlib.Path(run_dir, 'ran.log').open('a').write(f'{iteration if \"iteration\" in dir() else \"-\"}\\n')")
        cells = [nbformat.v4.new_code_cell("\n".join(declared)), nbformat.v4.new_code_cell(code)]
        cells[0].metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


@pytest.fixture
def fast_config(smoke_config):
    config = smoke_config.model_copy(deep=True)
    config.iterations = 2
    return config


def test_plan_and_stage_parameters(fast_config, tmp_path):
    keys = [s.key for s in plan(fast_config)]
    assert keys[:2] == ["iter_00/04_train", "iter_00/05_evaluate"]
    assert keys[2:6] == [f"iter_01/{s}" for s in WITHOUT_PRM] and keys[-1] == "06_report" and len(keys) == 11
    warmup = stage_parameters(fast_config, plan(fast_config)[0], tmp_path)
    assert warmup["max_steps"] == fast_config.warmup.max_steps and warmup["baseline"] is False
    sample = stage_parameters(fast_config, plan(fast_config)[2], tmp_path)
    assert sample == {"run_dir": str(tmp_path), "iteration": 1,
                      **fast_config.stage_config("sample", 1).model_dump(mode="json")}
    assert sample["n"] == fast_config.sample.n and sample["vllm"] == fast_config.vllm.model_dump()
    fast_config.warmup.max_steps = 0
    assert plan(fast_config)[0].key == "iter_00/05_evaluate"


def test_schedules_reach_each_iteration_and_its_metrics(fast_config, tmp_path):
    config = fast_config.model_copy(update={"schedules": {"sample.temperature": [0.5, 0.9],
                                                          "train.learning_rate": [1e-3, 2e-4]}})
    stages = plan(config)
    by_key = {s.key: s for s in stages}
    assert stage_parameters(config, by_key["iter_01/01_sample"], tmp_path)["temperature"] == 0.5
    assert stage_parameters(config, by_key["iter_02/01_sample"], tmp_path)["temperature"] == 0.9
    assert stage_parameters(config, by_key["iter_02/04_train"], tmp_path)["learning_rate"] == 2e-4
    assert stage_parameters(config, by_key["iter_00/04_train"], tmp_path)["learning_rate"] == config.warmup.learning_rate

    run = run_pipeline(config, tmp_path / "run", notebooks_dir=fixture_notebooks(tmp_path / "nb"), log=lambda m: None)
    assert run.metrics(2)["schedule"] == {"sample.temperature": 0.9, "train.learning_rate": 2e-4}
    executed = nbformat.read(run.iter_dir(2) / "01_sample.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["temperature"] == 0.9


def test_grpo_iterations_sample_inside_the_trainer(fast_config):
    from rft_helpers.config import config_from_dict

    data = fast_config.model_dump(mode="json")
    data["train"]["algorithm"] = ["sft", "grpo"]  # a schedule: SFT first, then on-policy GRPO
    keys = [s.key for s in plan(config_from_dict(data))]
    assert [k for k in keys if k.startswith("iter_01")] == [f"iter_01/{s}" for s in WITHOUT_PRM]
    assert [k for k in keys if k.startswith("iter_02")] == ["iter_02/04_train", "iter_02/05_evaluate"]


@pytest.mark.parametrize("retrain, second", [("once", WITHOUT_PRM), ("every_iteration", list(STAGES))])
def test_a_prm_is_trained_in_iteration_1_or_every_iteration(fast_config, retrain, second):
    from rft_helpers.config import config_from_dict

    data = fast_config.model_dump(mode="json") | {"prm": {"model": "trained", "retrain": retrain}}
    keys = [s.key for s in plan(config_from_dict(data))]
    assert [k for k in keys if k.startswith("iter_01")] == [f"iter_01/{s}" for s in STAGES]  # 02_prm included
    assert [k for k in keys if k.startswith("iter_02")] == [f"iter_02/{s}" for s in second]


def test_runs_every_stage_once_and_resume_skips_done(fast_config, tmp_path):
    notebooks = fixture_notebooks(tmp_path / "nb")
    run = run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    assert (run.dir / "ran.log").read_text().split() == ["0", "0"] + ["1"] * 4 + ["2"] * 4 + ["-"]
    assert all(v["status"] == "done" for v in run.state()["stages"].values())
    executed = nbformat.read(run.iter_dir(1) / "01_sample.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "temperature = " in injected[0].source
    assert executed.metadata.papermill.parameters["n"] == fast_config.sample.n
    assert set(run.metrics(1)["timing_s"]) == set(WITHOUT_PRM)

    messages = []
    run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=messages.append)
    assert (run.dir / "ran.log").read_text().count("\n") == 11  # nothing ran again
    assert all(m.startswith("[skip]") for m in messages)


def test_more_iterations_extend_a_run_but_changed_params_are_refused(fast_config, tmp_path):
    notebooks = fixture_notebooks(tmp_path / "nb")
    run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    fast_config.iterations = 3
    run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    # iteration 3's four stages ran, and the report was refreshed
    assert (tmp_path / "run" / "ran.log").read_text().split()[11:] == ["3"] * 4 + ["-"]
    fast_config.sample.temperature = 0.3
    with pytest.raises(ConfigError, match=r"sample.temperature: 1.0 -> 0.3"):
        run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)


def test_a_killed_kernel_is_one_line_and_the_stage_reruns(fast_config, tmp_path):
    killed = fixture_notebooks(tmp_path / "killed", {"03_filter": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"})
    with pytest.raises(StageFailed, match=r"^stage iter_01/03_filter failed \(the stage's kernel died .*run the same "
                                          r"command again to resume\); see "):
        run_pipeline(fast_config, tmp_path / "run", notebooks_dir=killed, log=lambda m: None)
    run = Run(tmp_path / "run")
    assert run.stage_status("iter_01/03_filter") == "failed"
    messages = []
    run_pipeline(fast_config, tmp_path / "run", notebooks_dir=fixture_notebooks(tmp_path / "ok"), log=messages.append)
    assert "[rerun] iter_01/03_filter (was failed)" in messages


def test_failed_stage_keeps_partial_notebook_and_reruns_on_resume(fast_config, tmp_path):
    broken = fixture_notebooks(tmp_path / "broken", {"03_filter": "raise RuntimeError('reward server down')"})
    with pytest.raises(StageFailed, match=r"iter_01/03_filter failed .*RuntimeError: reward server down"):
        run_pipeline(fast_config, tmp_path / "run", notebooks_dir=broken, log=lambda m: None)
    run = Run(tmp_path / "run")
    assert run.stage_status("iter_01/03_filter") == "failed"
    assert run.stage_status("iter_01/01_sample") == "done"
    assert "reward server down" in (run.iter_dir(1) / "03_filter.ipynb").read_text()  # partial notebook kept

    messages = []
    run_pipeline(fast_config, tmp_path / "run", notebooks_dir=fixture_notebooks(tmp_path / "ok"), log=messages.append)
    assert "[rerun] iter_01/03_filter (was failed)" in messages
    assert "[skip] iter_01/01_sample (done)" in messages
    assert run.stage_status("06_report") == "done"


def test_undeclared_parameters_are_refused(fast_config, tmp_path):
    notebooks = fixture_notebooks(tmp_path / "nb", declare_all=False)
    # iteration 0 runs first, and its 05_evaluate takes `n` too (majority and search answers)
    with pytest.raises(ConfigError, match=r"05_evaluate.ipynb: parameters \['n'\] are not declared"):
        run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)


# ---------------------------------------------------------------------------------- the real notebooks
# smoke_run (conftest.py): the smoke recipe run once for the session through the real notebooks


@pytest.mark.slow
def test_smoke_run_writes_the_run_directory_contract(smoke_run):
    run = smoke_run
    state = read_json(run.dir / "run.json")
    assert state["config"]["run_name"] == "smoke" and set(state["stages"]) == {s.key for s in plan(run.config)}
    assert (run.dir / "06_report.ipynb").exists() and (run.iter_dir(0) / "05_evaluate.ipynb").exists()
    for name in WITHOUT_PRM:
        assert (run.iter_dir(1) / f"{name}.ipynb").exists()

    samples = read_jsonl(run.iter_dir(1) / "samples.jsonl")
    assert len(samples) == run.config.sample.num_questions * run.config.sample.n
    assert {"id", "prompt", "completion", "sampling", "completion_tokens", "prompt_tokens"} <= set(samples[0])
    assert samples[0]["sampling"]["temperature"] == run.config.sample.temperature
    scored = read_jsonl(run.iter_dir(1) / "scored.jsonl")
    assert all("exact_answer" in r["rewards"] and "kept" in r and "reject_reason" in r for r in scored)
    train = read_jsonl(run.iter_dir(1) / "train.jsonl")
    assert len(train) == sum(r["kept"] for r in scored)

    metrics = run.metrics(1)
    assert metrics["iteration"] == 1
    assert {"eval", "sampling", "filter", "train", "timing_s"} <= set(metrics)
    assert 0.0 <= metrics["eval"]["accuracy"] <= 1.0 and metrics["eval"]["n"] == run.config.task.num_test
    assert "accuracy" in run.metrics(0)["eval"] and "baseline_eval" in run.metrics(0)
    best = run.state()["best"]  # the best-evaluated model, linked from the run folder
    accuracies = [run.metrics(i)["eval"]["accuracy"] for i in range(run.config.iterations + 1)]
    assert best["accuracy"] == max(accuracies) and best["iteration"] == accuracies.index(max(accuracies))
    assert (run.dir / "best_checkpoint").resolve() == Path(best["checkpoint"]).resolve()
    assert (run.iter_dir(0) / "checkpoint" / "config.json").exists()
    assert not [k for k, v in state["stages"].items() if "by_hand" in v or "overrides" in v]  # the pipeline ran all


@pytest.mark.slow
def test_every_file_of_the_run_is_its_record_format_and_loads_with_datasets(smoke_run):
    from datasets import load_dataset

    from rft_helpers.records import Prediction, Question, Sample, Scored, read_records

    formats = {"data/train.jsonl": Question, "data/test.jsonl": Question, "data/seed.jsonl": Question,
               "iter_01/samples.jsonl": Sample, "iter_01/scored.jsonl": Scored,
               "iter_00/predictions.jsonl": Prediction, "iter_01/predictions.jsonl": Prediction}
    for name, record in formats.items():
        rows = read_records(smoke_run.dir / name, record)
        assert rows and len(load_dataset("json", data_files=str(smoke_run.dir / name), split="train")) == len(rows)


@pytest.mark.slow
def test_executed_notebooks_hold_the_injected_parameters(smoke_run):
    executed = nbformat.read(smoke_run.iter_dir(1) / "01_sample.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f"n = {smoke_run.config.sample.n}" in injected.source
    assert f"run_dir = \"{smoke_run.dir}\"" in injected.source
    outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "image/png" in outputs  # the completion-length plot rendered
    report = nbformat.read(smoke_run.dir / "06_report.ipynb", as_version=4)
    assert "image/png" in json.dumps([c.get("outputs", []) for c in report.cells])


def test_a_run_folder_in_use_is_refused(fast_config, tmp_path, monkeypatch):
    from rft_helpers.pipeline import run_lock

    notebooks = fixture_notebooks(tmp_path / "nb")
    with run_lock(tmp_path / "run"):
        monkeypatch.delenv("RFT_LOCKED_RUN_DIR")  # as seen from another process
        with pytest.raises(ConfigError, match=r"run is in use by another rft run"):
            run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    # released: the same call now runs (the real notebooks, which call ensure_ready under the lock, run in the slow tests)
    run_pipeline(fast_config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    assert Run(tmp_path / "run").stage_status("06_report") == "done"


@pytest.mark.slow
def test_a_run_with_a_prm_trained_in_the_loop_labels_trains_filters_and_reports(tmp_path):
    """The smoke loop with 02_prm (relative labels here; the soft ones' labelling and training: test_prm.py):
    rollout labels, the PRM, scores on every sample and the report's process plot."""
    from rft_helpers.prm.labels import step_targets
    from rft_helpers.records import Scored, StepLabels, read_records

    config = load_config(Path(__file__).resolve().parent.parent / "params" / "smoke.yaml",
                         ["prm.model=trained", "prm.samples=12", "prm.rollouts=2", "prm.num_epochs=1",
                          "prm.labels=relative", "prm.pool_identical_steps=true", "filter.prm=true",
                          "filter.prm_threshold=0.2", "filter.prm_aggregation=min_before_last"])
    run = run_pipeline(config, tmp_path / "run", log=lambda m: None)
    assert run.stage_status("iter_01/02_prm") == "done"
    labels = read_records(run.iter_dir(1) / "prm_labels.jsonl", StepLabels)
    assert len(labels) <= 12 and all(r["truth"] is not None and len(r["truth"]) == len(r["labels"]) for r in labels)
    prm = run.metrics(1)["prm"]
    assert prm["rollouts"]["rollouts"] == prm["rollouts"]["prefixes"] * 2 and prm["training"]["steps"] > 0
    # relative labels: each question's bare prompt is rolled out once too, and every step has its agreement
    steps_before_the_last = sum(len(r["completions"]) - 1 for r in labels)
    assert prm["rollouts"]["prefixes"] == steps_before_the_last + len({r["id"] for r in labels})
    assert all(r["prompt_success"] is not None and None not in r["agreement"] for r in labels)
    # what the PRM trained on: each step before the answer, the mean relative label of the same step in the
    # training rows; the answer line, its outcome
    pool = {}
    for r in labels:
        for step, target in zip(r["completions"][:-1], step_targets(r, "relative")):
            if not r["heldout"]:
                pool.setdefault(" ".join(step.split()), []).append(target)
    for r in labels:
        own = step_targets(r, "relative")
        expected = [sum(pool[k]) / len(pool[k]) if (k := " ".join(s.split())) in pool else t
                    for s, t in zip(r["completions"][:-1], own)] + own[-1:]
        assert r["targets"] == pytest.approx(expected)
    assert {"step_auroc", "label_agreement", "heldout_steps"} <= set(prm)
    scored = read_records(run.iter_dir(1) / "scored.jsonl", Scored)
    assert all(r["step_scores"] is not None and "prm" in r["rewards"] for r in scored)
    assert all(r["rewards"]["prm"] == pytest.approx(min(r["step_scores"][:-1] or r["step_scores"])) for r in scored
               if r["step_scores"])
    assert run.metrics(1)["filter"]["prm_model"] == str(run.prm_checkpoint(1))
    executed = nbformat.read(run.iter_dir(1) / "02_prm.ipynb", as_version=4)
    assert json.dumps([c.get("outputs", []) for c in executed.cells]).count("image/png") >= 2  # labels and ROC


def test_stage_kernels_start_and_stop_without_their_log_lines(fast_config, tmp_path, capfd):
    """ipykernel's 'running over TCP without encryption' at every start and 'KeyboardInterrupt caught' at every
    shutdown are the kernel app's own log, silenced; the pipeline's lines stay."""
    run_pipeline(fast_config, tmp_path / "run", notebooks_dir=fixture_notebooks(tmp_path / "nb"))
    captured = capfd.readouterr()
    assert "[done] 06_report" in captured.out
    assert "IPKernelApp" not in captured.err + captured.out and "without encryption" not in captured.err
