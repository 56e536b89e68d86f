import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rft_helpers.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [[], ["run"], ["status"], ["validate"]])
def test_help_for_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: rft" in capsys.readouterr().out


def test_validate(capsys):
    assert main(["validate", str(ROOT / "params" / "demo.yaml")]) == 0
    assert "ok (run demo, 3 iterations" in capsys.readouterr().out


def test_a_recipe_shipped_with_the_package_is_found_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params/ here
    assert main(["validate", "params/smoke.yaml"]) == 0
    assert main(["validate", "demo"]) == 0
    assert "ok (run demo, 3 iterations" in capsys.readouterr().out
    assert main(["validate", "params/nope.yaml"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: params/nope.yaml: params file not found (recipes shipped with rft: "
        + ", ".join(sorted(p.stem for p in (ROOT / "params").glob("*.yaml"))) + ")")


def test_status_of_a_missing_run_is_one_line_error(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: not a run folder (no run.json); give the folder `rft run` wrote"


def _stage_status(run_dir: Path, key: str) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text())["stages"].get(key, {}).get("status")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.mark.slow
def test_resume_after_the_run_is_killed_mid_stage(tmp_path):
    """Kill `rft run` (and its kernel) while iteration 1 samples; the rerun skips finished stages and completes."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rft_helpers.cli", "run", str(ROOT / "params" / "smoke.yaml"), "--output-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 900  # a hang guard: the smoke run reaches iteration 1 in about a minute
    while _stage_status(run_dir, "iter_01/01_sample") != "running":
        assert proc.poll() is None and time.time() < deadline, "run ended before iteration 1 started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {k: (run_dir / f"{k}.ipynb").stat().st_mtime_ns for k in ("iter_00/04_train", "iter_00/05_evaluate")}

    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[skip] iter_00/05_evaluate (done)" in out.stdout
    assert "[rerun] iter_01/01_sample (was interrupted)" in out.stdout  # its process is gone
    assert {k: (run_dir / f"{k}.ipynb").stat().st_mtime_ns for k in finished} == finished  # not re-executed
    status = subprocess.run([sys.executable, "-m", "rft_helpers.cli", "status", str(run_dir)], capture_output=True,
                            text=True, cwd=ROOT)
    assert "pending" not in status.stdout and "failed" not in status.stdout
    assert status.stdout.count("done") == 7
