"""Nothing lost, nothing silently wrong: broken run folders, damaged stages, dead processes, bad output folders."""

from __future__ import annotations

import logging
import subprocess

import pytest

from rft_helpers.cli import main
from rft_helpers.exceptions import ConfigError
from rft_helpers.io import read_json, write_json
from rft_helpers.pipeline import run_pipeline
from rft_helpers.recipes import load_config
from rft_helpers.run import Run

from conftest import SMOKE
from test_pipeline import fixture_notebooks

# a stage that writes a result file into its iteration's folder, as the real stages do
WRITES = {name: "import pathlib; pathlib.Path(run_dir, f'iter_{iteration:02d}').mkdir(exist_ok=True); "
                f"pathlib.Path(run_dir, f'iter_{{iteration:02d}}', '{name}.out').write_text('{name}' * 10)"
          for name in ("01_sample", "03_filter", "04_train", "05_evaluate")}


@pytest.fixture
def config():
    return load_config(SMOKE, ["iterations=1"])


def test_a_damaged_stage_is_named_and_redo_repairs_it(config, tmp_path, capsys):
    notebooks = fixture_notebooks(tmp_path / "nb", WRITES)
    run = run_pipeline(config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    outputs = run.state()["stages"]["iter_01/04_train"]["outputs"]
    assert list(outputs) == ["iter_01/04_train.out"] and outputs["iter_01/04_train.out"]["size"] == 80
    (run.iter_dir(1) / "04_train.out").write_text("truncated")
    assert run.stage_status("iter_01/04_train") == "damaged"
    assert main(["status", str(run.dir)]) == 0
    assert "iter_01/04_train.out is 9 bytes, not the 80 it was written with: rft run --redo iter_01/04_train" \
        in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"stage iter_01/04_train is damaged .* --redo iter_01/04_train"):
        run_pipeline(config, run.dir, notebooks_dir=notebooks, log=lambda m: None)
    (run.iter_dir(1) / "03_filter.out").unlink()
    lines: list[str] = []
    run_pipeline(config, run.dir, notebooks_dir=notebooks, log=lines.append,
                 redo=["iter_01/03_filter", "iter_01/04_train"])
    assert "[redo] iter_01/04_train" in lines and "[skip] iter_01/05_evaluate (done)" in lines
    assert run.stage_status("iter_01/04_train") == "done" and run.damage("iter_01/03_filter") is None
    with pytest.raises(ConfigError, match=r"--redo iter_09/04_train: not a stage of this run"):
        run_pipeline(config, run.dir, notebooks_dir=notebooks, log=lambda m: None, redo=["iter_09/04_train"])


def test_a_stage_whose_process_died_reads_interrupted(config, tmp_path, capsys):
    run = run_pipeline(config, tmp_path / "run", notebooks_dir=fixture_notebooks(tmp_path / "nb"), log=lambda m: None)
    gone = subprocess.Popen(["true"])
    gone.wait()
    run.set_stage("iter_01/04_train", status="running", pid=gone.pid)
    assert run.stage_status("iter_01/04_train") == "interrupted"
    main(["status", str(run.dir)])
    assert "interrupted   " in capsys.readouterr().out


@pytest.mark.parametrize("content", ["[]", "{}", '{"config": {}}', '{"config": {}, "stages": []}', "not json"])
def test_a_run_json_of_the_wrong_shape_is_one_line(tmp_path, capsys, content):
    (tmp_path / "run.json").write_text(content)
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'run.json'}: ")


def test_metrics_without_an_accuracy_do_not_break_status(config, tmp_path, capsys):
    run = run_pipeline(config, tmp_path / "run", notebooks_dir=fixture_notebooks(tmp_path / "nb"), log=lambda m: None)
    write_json(run.iter_dir(1) / "metrics.json", {"iteration": 1, "eval": {"n": 16}})
    assert main(["status", str(run.dir)]) == 0
    assert "(no accuracy in metrics.json)" in capsys.readouterr().out


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_text("x"), "is a file; give a folder"),
    (lambda p: (p.parent / "ro").mkdir() or (p.parent / "ro").chmod(0o500), "cannot write in"),
])
def test_an_output_dir_that_cannot_hold_a_run_is_one_line(tmp_path, capsys, make, expected):
    target = tmp_path / "out"
    make(target)
    folder = target if target.exists() else tmp_path / "ro" / "run"
    if expected == "cannot write in" and subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0":
        pytest.skip("root writes into a read-only folder")
    assert main(["validate", str(SMOKE)]) == 0
    capsys.readouterr()
    assert main(["run", str(SMOKE), "--output-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_a_run_whose_dataset_failed_takes_the_corrected_recipe(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"question": "{i}+1=?", "ans": "{i + 1}"}}\n' for i in range(40)))
    base = ["task.name=dataset", f"task.train.path={data}", f"task.test.path={data}", "task.num_train=20", "task.num_test=4",
            "task.seed_size=0", "warmup.max_steps=0", "train.baseline=false"]
    with pytest.raises(ConfigError, match="has no field 'answer'"):
        Run.create(load_config(None, base), tmp_path / "run")
    assert (tmp_path / "run" / "run.json").exists()  # written, but no stage ran
    run = Run.create(load_config(None, [*base, "task.train.answer_field=ans", "task.test.answer_field=ans"]),
                     tmp_path / "run")
    assert run.config.task.train.answer_field == "ans" and (run.data_dir / "train.jsonl").exists()


def test_lowering_iterations_says_so(config, tmp_path, caplog):
    notebooks = fixture_notebooks(tmp_path / "nb")
    run_pipeline(load_config(SMOKE, ["iterations=2"]), tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    with caplog.at_level(logging.WARNING):
        run_pipeline(config, tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None)
    assert "iterations lowered from 2 to 1" in caplog.text
    assert read_json(tmp_path / "run" / "run.json")["config"]["iterations"] == 1


@pytest.mark.parametrize("too_long", ["skip", "error"])
def test_questions_longer_than_the_context_are_skipped_or_refused_by_row(tmp_path, too_long):
    from rft_helpers.io import read_jsonl

    data = tmp_path / "train.jsonl"
    rows = [{"question": f"{i}+1=?", "answer": str(i + 1)} for i in range(30)]
    rows[3]["question"] = "9" * 5000 + "+1=?"  # far past the scratch model's 256 positions
    data.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    config = load_config(SMOKE, ["task.name=dataset", f"task.train.path={data}", f"task.test.path={data}",
                                 "task.num_train=30", "task.num_test=30", "task.seed_size=0",
                                 "warmup.max_steps=0", "train.baseline=false", f"task.too_long={too_long}"])
    if too_long == "error":
        with pytest.raises(ConfigError, match=r"task.train: question train-00\d\d\d is 5,0\d\d prompt tokens; with 24 "
                                              r"for the answer it exceeds the model's context of 256"):
            Run.create(config, tmp_path / "run")
        return
    run = Run.create(config, tmp_path / "run")
    assert len(read_jsonl(run.data_dir / "test.jsonl")) == 29 and len(read_jsonl(run.data_dir / "train.jsonl")) == 29
    assert run.metrics(0)["data"]["too_long_skipped"] == {"train": 1, "test": 1}


def test_a_finished_run_takes_a_raised_spending_cap_but_not_another_temperature(config, tmp_path):
    run = Run.create(config, tmp_path / "run")
    state = read_json(run.dir / "run.json")
    state["stages"]["iter_00/05_evaluate"] = {"status": "done"}
    write_json(run.dir / "run.json", state)
    raised = load_config(SMOKE, ["iterations=1", "openai.max_cost_usd=5", "openai.prompt_price_per_million=1",
                                 "openai.max_concurrency=2", "openai.timeout_s=30"])
    assert Run.create(raised, tmp_path / "run").config.openai.max_cost_usd == 5  # how an endpoint is called
    with pytest.raises(ConfigError, match=r"parameters differ from the finished run's \(sample.temperature"):
        Run.create(load_config(SMOKE, ["iterations=1", "sample.temperature=0.3"]), tmp_path / "run")
