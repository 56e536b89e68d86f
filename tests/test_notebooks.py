"""The stage notebooks: clean, parameterised, and their defaults are the demo recipe's values."""

from pathlib import Path

import nbformat
import papermill as pm
import pytest

from rft_helpers.config import load_config
from rft_helpers.pipeline import STAGES, Stage, stage_parameters

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_five_stage_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == [*STAGES, "05_report"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert len(code) <= 15 and nb.cells[0].cell_type == "markdown"


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_defaults_are_the_demo_recipe(stage):
    """Run by hand, a notebook does what `rft run params/demo.yaml` does in iteration 1."""
    config = load_config(ROOT / "params" / "demo.yaml")
    expected = stage_parameters(config, Stage(stage, 1), Path("unused"))
    declared = pm.inspect_notebook(str(ROOT / "notebooks" / f"{stage}.ipynb"))
    for name, value in expected.items():
        if name == "run_dir":
            continue
        assert name in declared, f"{stage}: parameter {name} not declared"
        assert eval(declared[name]["default"]) == value, f"{stage}: {name} default differs from params/demo.yaml"


@pytest.mark.slow
def test_a_stage_notebook_run_by_hand_first_runs_the_stages_it_needs(tmp_path):
    """As in JupyterLab: run 01_sample with its defaults (the smoke recipe to keep it short) on a new folder."""
    from rft_helpers.io import read_jsonl
    from rft_helpers.run import Run

    run_dir = tmp_path / "by-hand"
    pm.execute_notebook(str(ROOT / "notebooks" / "01_sample.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"run_dir": str(run_dir), "params_file": str(ROOT / "params" / "smoke.yaml")},
                        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    run = Run(run_dir)
    assert run.stage_status("iter_00/04_evaluate") == "done"  # iteration 0 ran first, through the pipeline
    samples = read_jsonl(run.iter_dir(1) / "samples.jsonl")
    assert len(samples) == run.config.task.num_train * 8  # the notebook's own defaults: every question, n=8
    assert {s["sampling"]["temperature"] for s in samples} == {0.7}
