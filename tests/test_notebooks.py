"""The stage notebooks: clean, parameterised from config.py, thin, and run by hand they record what they changed."""

import ast
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from rft_helpers.config import STAGE_CONFIGS
from rft_helpers.pipeline import STAGES
from rft_helpers.stages import parameters

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_five_stage_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == [*STAGES, "06_report"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert len(code) <= 15 and nb.cells[0].cell_type == "markdown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_logic_in_the_notebooks(path):
    """Cells call named steps and show their results; loops, branches and definitions live in rft_helpers."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            statements = [type(node).__name__ for node in ast.walk(ast.parse(cell.source))
                          if isinstance(node, (ast.For, ast.While, ast.If, ast.FunctionDef, ast.ClassDef, ast.With))]
            assert not statements, f"{path.name}: a cell holds {statements}: move it into rft_helpers/"
    steps = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
    assert len(steps) >= 3  # each step says why


@pytest.mark.parametrize("stage", STAGES)
def test_parameters_cells_declare_exactly_their_stage_configs_fields(stage):
    """Every knob of the stage is in its cell, and nothing else: None, the recipe's value."""
    declared = pm.inspect_notebook(str(ROOT / "notebooks" / f"{stage}.ipynb"))
    fields = list(STAGE_CONFIGS[parameters.NOTEBOOK_SECTIONS[stage]].model_fields)
    assert list(declared) == ["run_dir", "params_file", "iteration", *fields]
    assert {declared[name]["default"] for name in fields} == {"None"}
    assert all(declared[name]["help"] for name in declared)  # papermill --help-notebook describes each


@pytest.mark.parametrize("stage", STAGES)
def test_no_cell_reuses_the_name_of_a_setting(stage):
    """`run.stage_config(..., globals())` reads the settings by name: a later cell assigning one (`engine = ...`)
    would feed its result back in when the setup cell runs again."""
    fields = set(STAGE_CONFIGS[parameters.NOTEBOOK_SECTIONS[stage]].model_fields)
    cells = [c for c in nbformat.read(ROOT / "notebooks" / f"{stage}.ipynb", as_version=4).cells
             if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    assigned = {node.id for cell in cells for node in ast.walk(ast.parse(cell.source))
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    assert not assigned & fields


def test_parameters_cells_are_written_from_config():
    assert parameters.out_of_date() == [], "a setting changed in config.py: run `make notebooks`"


def test_a_new_setting_needs_one_edit_in_config_and_make_notebooks(tmp_path, monkeypatch):
    from pydantic import Field

    from rft_helpers.config import FilterConfig

    class WithANewSetting(FilterConfig):  # as if one line were added to FilterConfig
        max_answer_chars: int | None = Field(None, gt=0, description="drop completions whose answer is longer")

    for path in NOTEBOOKS:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setitem(STAGE_CONFIGS, "filter", WithANewSetting)
    assert parameters.out_of_date(tmp_path) == [tmp_path / "03_filter.ipynb"]
    assert parameters.main([str(tmp_path)]) == 0  # make notebooks
    declared = pm.inspect_notebook(str(tmp_path / "03_filter.ipynb"))
    assert list(declared)[-1] == "max_answer_chars" and declared["max_answer_chars"]["help"].startswith("drop")
    assert parameters.main(["--check", str(tmp_path)]) == 0


@pytest.mark.slow
def test_a_stage_run_by_hand_uses_the_recipe_and_records_what_it_changed(tmp_path):
    """As in JupyterLab: 01_sample on a new folder (the smoke recipe) runs what it needs first and samples with
    the recipe's settings; run again with an edited value, run.json records it, `rft run` keeps that stage and says
    so, and the report shows it."""
    from rft_helpers.recipes import load_config
    from rft_helpers.io import read_jsonl
    from rft_helpers.pipeline import run_pipeline
    from rft_helpers.report import hand_runs
    from rft_helpers.run import Run

    run_dir, smoke = tmp_path / "by-hand", ROOT / "params" / "smoke.yaml"

    def by_hand(**values):
        pm.execute_notebook(str(ROOT / "notebooks" / "01_sample.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"run_dir": str(run_dir), "params_file": str(smoke), **values},
                            cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
        return Run(run_dir)

    run = by_hand()
    assert run.stage_status("iter_00/05_evaluate") == "done"  # iteration 0 ran first, through the pipeline
    recipe = load_config(smoke).sample
    samples = read_jsonl(run.iter_dir(1) / "samples.jsonl")
    assert len(samples) == recipe.num_questions * recipe.n  # the recipe's values, not the demo's
    entry = run.state()["stages"]["iter_01/01_sample"]
    assert (entry["status"], entry["by_hand"], entry["overrides"]) == ("done", True, {})

    run = by_hand(n=3, vllm={"kv_cache_gib": 2})
    assert len(read_jsonl(run.iter_dir(1) / "samples.jsonl")) == recipe.num_questions * 3
    assert run.state()["stages"]["iter_01/01_sample"]["overrides"] == {"n": 3, "vllm.kv_cache_gib": 2.0}

    messages = []
    run_pipeline(run.config, run_dir, log=messages.append)
    assert "[skip] iter_01/01_sample (done, run by hand with n=3, vllm.kv_cache_gib=2.0)" in messages
    assert run.metrics(1)["filter"]["samples"] == recipe.num_questions * 3  # the filter used what really ran
    assert hand_runs(run).to_dict("records") == [
        {"stage": "iter_01/01_sample", "status": "done", "overrides": {"n": 3, "vllm.kv_cache_gib": 2.0}}]

    run = by_hand(n=2)  # again, after the later stages finished: they must run again on the new samples
    stages = run.state()["stages"]
    assert all(stages[k]["status"] == "pending" and "01_sample was run again by hand" in stages[k]["stale"]
               for k in ("iter_01/03_filter", "iter_01/04_train", "iter_01/05_evaluate", "06_report"))
    assert stages["iter_00/05_evaluate"]["status"] == "done"
