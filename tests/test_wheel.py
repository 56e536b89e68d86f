"""A wheel that runs: built from a clean copy of the checkout, installed in a fresh virtual environment (not
activated), `rft run params/smoke.yaml` in a folder outside the repository runs the whole pipeline from the
notebooks, recipes and accelerate configs the wheel carries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def clean_copy(destination: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, none it ignores: no .venv, outputs or builds),
    with the package's links kept as links."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = ROOT / name, destination / name
        if not source.exists() and not source.is_symlink():  # deleted in the working tree
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return destination


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_wheel_installed_in_a_fresh_venv_runs_the_smoke_recipe_from_any_folder(tmp_path):
    source = clean_copy(tmp_path / "checkout")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("rft_helpers-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"rft_helpers/notebooks/01_sample.ipynb", "rft_helpers/params/smoke.yaml",
            "rft_helpers/params/accelerate/ddp.yaml", "rft_helpers/params/prompts/step_by_step.txt"} <= set(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints-cpu.txt"),
                    str(wheel)], check=True, timeout=1200)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFT_", "PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # the venv is not activated
    out = subprocess.run([str(venv / "bin" / "rft"), "run", "params/smoke.yaml", "--output-dir", "run"], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    packaged = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "rft_helpers"
    assert f"({packaged / 'params' / 'smoke.yaml'})" in out.stdout  # the wheel's own recipe
    state = json.loads((elsewhere / "run" / "run.json").read_text())
    assert {v["status"] for v in state["stages"].values()} == {"done"}
    executed = json.loads((elsewhere / "run" / "iter_01" / "01_sample.ipynb").read_text())
    assert executed["metadata"]["papermill"]["input_path"] == str(packaged / "notebooks" / "01_sample.ipynb")
