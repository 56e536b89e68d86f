"""Where the package's own files live, and how a path in the parameters is told from a hub id.

The stage notebooks and the recipes (with the accelerate configs) are kept where users look for them, in the
repository's `notebooks/` and `params/`. The package reaches them through the links `rft_helpers/notebooks` and
`rft_helpers/params`, which a built wheel turns into copies: an editable install reads the working tree, an
installed wheel its own files, and both through the same paths below.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
NOTEBOOKS_DIR = PACKAGE_DIR / "notebooks"
PARAMS_DIR = PACKAGE_DIR / "params"
ACCELERATE_DIR = PARAMS_DIR / "accelerate"


def is_local_path(path: str) -> bool:
    """Local paths start with '.', '/' or '~', or end in .jsonl/.json; anything else is a hub id."""
    return path.startswith((".", "/", "~")) or path.endswith((".jsonl", ".json"))


def packaged_recipe(name: str | Path) -> Path | None:
    """The recipe shipped with the package that `name` (`demo`, `demo.yaml` or `params/demo.yaml`) refers to."""
    stem = Path(name).name.removesuffix(".yaml").removesuffix(".yml")
    path = PARAMS_DIR / f"{stem}.yaml"
    return path if stem and path.is_file() else None


def packaged_recipes() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
