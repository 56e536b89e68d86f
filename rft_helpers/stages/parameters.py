"""The stage notebooks' `parameters` cells, written from config.py so that each setting is described once.

A cell declares `run_dir`, `params_file` and `iteration`, then one line per field of its stage config
(`config.STAGE_CONFIGS`), each None: the run's recipe value at that iteration. A Jupyter user edits a line to
change that stage (`Run.stage_config` records the change in run.json); the pipeline injects the recipe's values,
which papermill shows in every executed copy.

    python -m rft_helpers.stages.parameters           # rewrite the cells in notebooks/ (make notebooks)
    python -m rft_helpers.stages.parameters --check   # exit 1 when one is out of date (a test checks it too)
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

import nbformat
from pydantic import BaseModel

from ..config import STAGE_CONFIGS
from ..paths import NOTEBOOKS_DIR

NOTEBOOK_SECTIONS = {"01_sample": "sample", "02_prm": "prm", "03_filter": "filter", "04_train": "train",
                     "05_evaluate": "eval"}
ITERATION_HELP = {
    "01_sample": "RFT iteration (1, 2, ...); it samples from the previous iteration's checkpoint",
    "02_prm": "RFT iteration whose samples' steps are labelled by rollouts to train the PRM",
    "03_filter": "RFT iteration whose samples are filtered",
    "04_train": "0: the warm-up on the seed set; 1, 2, ...: training on the kept samples",
    "05_evaluate": "iteration whose checkpoint is evaluated (0: the starting model)",
}
RUN_LINES = [
    'run_dir: str = "../outputs/notebook-demo"  # run folder; created from params_file when it has no run.json',
    'params_file: str = "../params/demo.yaml"  # recipe, read only when run_dir has no run.json yet',
]
SETTINGS_NOTE = [
    "# The stage's settings (rft_helpers/config.py). None: the recipe's value at this iteration. A value here changes",
    "# this stage only, and run.json records it; a dict for a section changes only the keys it names.",
]


def type_name(annotation) -> str:
    """A field's type as the cell shows it: int, float, str, bool, list, dict (a section), or a Union of them."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return type_name(get_args(annotation)[0])
    if origin is Literal:
        return type(get_args(annotation)[0]).__name__
    if origin in (Union, types.UnionType):
        members = list(dict.fromkeys(type_name(a) for a in get_args(annotation) if a is not type(None)))
        return members[0] if len(members) == 1 else f"Union[{', '.join(members)}]"
    if origin in (list, dict):
        return origin.__name__
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "dict"
    return annotation.__name__


def parameters_source(notebook: str) -> str:
    """The parameters cell of a stage notebook (its name without .ipynb)."""
    stage_config = STAGE_CONFIGS[NOTEBOOK_SECTIONS[notebook]]
    lines = [*RUN_LINES, f"iteration: int = 1  # {ITERATION_HELP[notebook]}", "", *SETTINGS_NOTE]
    for name, field in stage_config.model_fields.items():
        description = field.description or ""
        if "=" in description:  # papermill skips a line with a second '=' as unparseable
            raise ValueError(f"{stage_config.__name__}.{name}: its description must not contain '='")
        lines.append(f'{name}: "Optional[{type_name(field.annotation)}]" = None  # {description}')
    return "\n".join(lines)


def parameters_cell(notebook: nbformat.NotebookNode):
    return next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))


def out_of_date(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The stage notebooks whose parameters cell is not what config.py gives."""
    paths = [folder / f"{name}.ipynb" for name in NOTEBOOK_SECTIONS]
    return [p for p in paths if parameters_cell(nbformat.read(p, as_version=4)).source != parameters_source(p.stem)]


def write_cells(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Rewrite the out-of-date parameters cells; returns the notebooks written."""
    written = out_of_date(folder)
    for path in written:
        notebook = nbformat.read(path, as_version=4)
        parameters_cell(notebook).source = parameters_source(path.stem)
        nbformat.write(notebook, path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the stage notebooks' parameters cells from config.py.")
    parser.add_argument("--check", action="store_true", help="only report out-of-date cells (exit 1 if any)")
    parser.add_argument("folder", nargs="?", type=Path, default=NOTEBOOKS_DIR)
    args = parser.parse_args(argv)
    stale = out_of_date(args.folder) if args.check else write_cells(args.folder)
    for path in stale:
        print(f"{path}: {'out of date: run `make notebooks`' if args.check else 'parameters cell written'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
