"""A sweep of bad inputs and faults, each judged by its outcome; prints one JSON line.

    python bench/faults.py [--no-kills] [--verbose]

Cases: params files, --set values, datasets, secrets, run folders and files, damaged stages, and SIGKILLs during
a stage of a real smoke run. Each is judged:
  clear_error  a non-zero exit with one line naming what is wrong (`error: ...`), no traceback
  survived     the command did what it should (a resumed run finished with every stage whole; damage was named)
  traceback    a Python traceback reached the user
  silent       bad input accepted (the run went on to its stages) or damage not reported
  leaked       a secret's value appeared in the output
  lost         a finished stage's files were gone or changed after a fault and a rerun
Commands run in-process through `rft_helpers.cli.main`; a run whose bad input is not caught stops where its first
stage would start (counted as silent: `pipeline.run_stage` is replaced by a stop). The kills run real `rft run` processes on the smoke recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rft_helpers import pipeline  # noqa: E402
from rft_helpers.cli import main  # noqa: E402

SMOKE = ROOT / "params" / "smoke.yaml"
SECRETS = ["sk-test-SECRET123", "hf_SECRET123xyz", "Zx81kQ2mP0vB7nL4aW9eR3tYq", "ghp_abcdefSECRET999"]


class ReachedStages(Exception):
    """The bad input got past every check: the pipeline was about to run its stages."""


def invoke(argv: list[str]) -> tuple[int | str, str]:
    """(exit code or 'traceback' or 'reached', stdout + stderr) of `rft argv` in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except ReachedStages:
            return "reached", out.getvalue()
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
        except BaseException as e:  # noqa: BLE001 - any escape is a traceback to the user
            return "traceback", out.getvalue() + f"{type(e).__name__}: {e}"
    return code, out.getvalue()


def judge_error(code, output: str, secret: str | None = None) -> str:
    if secret and secret in output:
        return "leaked"
    if code == "traceback" or "Traceback (most recent call last)" in output:
        return "traceback"
    if code in ("reached", 0):
        return "silent"
    # ours: `error: ...`; argparse's: a usage line, then `rft run: error: ...`
    lines = [line for line in output.strip().splitlines() if line.startswith("error: ") or
             (line.startswith("rft") and ": error: " in line)]
    return "clear_error" if code == 2 and len(lines) == 1 else "traceback"


# ------------------------------------------------------------------------------------------------ the cases
BAD_PARAMS = {
    # unknown keys, each section
    **{f"unknown key in {s}": f"{s}:\n  bogus_key: 1\n" for s in
       ("model", "task", "warmup", "sample", "filter", "train", "eval", "prm", "vllm", "openai", "tracking")},
    "unknown top-level key": "bogus: 1\n",
    # wrong types and values
    "n: true": "sample:\n  n: true\n", "n: '8'": "sample:\n  n: '8'\n", "n: 0": "sample:\n  n: 0\n",
    "n: -3": "sample:\n  n: -3\n", "n: 2.5": "sample:\n  n: 2.5\n", "n: [ ]": "sample:\n  n: []\n",
    "temperature: hot": "sample:\n  temperature: hot\n", "temperature: -1": "sample:\n  temperature: -1\n",
    "top_p: 2": "sample:\n  top_p: 2\n", "learning_rate: .inf": "train:\n  learning_rate: .inf\n",
    "learning_rate: .nan": "train:\n  learning_rate: .nan\n", "learning_rate: 0": "train:\n  learning_rate: 0\n",
    "batch_size: yes": "train:\n  batch_size: yes\n", "num_epochs: -1": "train:\n  num_epochs: -1\n",
    "algorithm: ppo": "train:\n  algorithm: ppo\n", "method: qlora": "train:\n  method: qlora\n",
    "engine: tgi": "sample:\n  engine: tgi\n", "strategy: astar": "sample:\n  strategy: astar\n",
    "reward: no_such_reward": "filter:\n  reward: no_such_reward\n",
    "task name": "task:\n  name: sudoku\n", "digits: 12": "task:\n  digits: 12\n",
    "seed_size > num_train": "task:\n  num_train: 10\n  seed_size: 20\n", "iterations: -1": "iterations: -1\n",
    "run_name with a slash": "run_name: a/b\n", "seed: text": "seed: abc\n",
    "section is a scalar": "sample: 3\n", "section is a list": "train: [1, 2]\n",
    "lr_scheduler unknown": "train:\n  lr_scheduler: sometimes\n",
    "trainer_args unknown field": "train:\n  trainer_args: {no_such_field: 1}\n",
    "trainer_args owned field": "train:\n  trainer_args: {learning_rate: 0.1}\n",
    "grpo batch not a multiple of n": "sample:\n  n: 3\ntrain:\n  algorithm: grpo\n  batch_size: 8\n",
    "grpo with temperature auto": "sample:\n  temperature: auto\ntrain:\n  algorithm: grpo\n",
    "beam width does not divide n": "prm:\n  model: trained\nsample:\n  strategy: beam_search\n  n: 6\n  search: {beam_width: 4}\n",
    "filter.prm without a PRM": "filter:\n  prm: true\n",
    "empty schedule": "sample:\n  temperature: []\n",
    "bad value in a schedule": "sample:\n  temperature: [0.5, hot]\n",
    "tracker not supported": "tracking:\n  report_to: [neptune]\n",
    "model folder missing": "model:\n  name_or_path: ./no/such/model\n",
    "system prompt file missing": "task:\n  system_prompt_file: ./no_such_prompt.txt\n",
    "accelerate config missing": "train:\n  num_processes: 2\n  accelerate_config: no_such\n",
    # YAML itself
    "duplicate key": "sample:\n  n: 4\n  n: 8\n", "duplicate section": "sample: {n: 4}\nsample: {n: 8}\n",
    "unclosed list": "sample:\n  n: [1\n", "tab indentation": "sample:\n\tn: 4\n", "bad indentation": "sample:\n  n: 4\n   t: 1\n",
    "unclosed quote": "run_name: 'abc\n", "empty file": "", "only a comment": "# nothing\n",
    "top-level list": "- a\n- b\n", "top-level scalar": "42\n",
}
BAD_SETS = {
    "no equals sign": ["sample.n"], "empty key": ["=3"], "unparsable value": ["sample.n=[1"],
    "unknown section": ["nosuch.n=3"], "unknown key": ["sample.nn=3"], "a section set to a number": ["sample=3"],
    "into a scalar": ["seed.x=1"], "bool for int": ["sample.n=true"], "negative": ["sample.n=-1"],
    "inf": ["train.learning_rate=.inf"], "bad literal": ["train.algorithm=ppo"], "empty schedule": ["sample.n=[]"],
    "bad schedule item": ["sample.temperature=[0.5, x]"], "too big seed set": ["task.seed_size=5000"],
    "iterations text": ["iterations=many"], "unclosed brace": ["train.trainer_args={a: 1"],
    "duplicate key in a flow map": ["train.trainer_args={adam_beta2: 0.9, adam_beta2: 0.95}"],
    "grpo rules": ["train.algorithm=grpo", "sample.n=3", "train.batch_size=8"],
    "tracker not installed": ["tracking.report_to=[no_such_tracker]"],
    "unset key for a remote URL": ["sample.engine=openai", "openai.base_url=https://api.example.com/v1",
                                   "openai.api_key_env=RFT_BENCH_UNSET_KEY"],
}
BAD_DATASETS = {
    "empty file": b"", "blank lines only": b"\n\n",
    "malformed line": b'{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": 4\n',
    "non-UTF-8": b'{"question": "caf\xe9", "answer": "1"}\n', "a list per line": b'["1+1?", "2"]\n',
    "a number per line": b"42\n", "missing answer field": b'{"question": "1+1?", "ans": "2"}\n' * 40,
    "missing question field": b'{"q": "1+1?", "answer": "2"}\n' * 40,
    "no usable rows": b'{"question": "", "answer": ""}\n' * 40,
    "binary garbage": bytes(range(256)) * 4,
}


def params_cases(tmp: Path) -> list[tuple[str, list[str], str | None]]:
    cases = []
    for name, text in BAD_PARAMS.items():
        path = tmp / f"params-{len(cases)}.yaml"
        path.write_text(text)
        cases.append((f"params: {name}", ["validate", str(path)], None))
    utf = tmp / "latin1.yaml"
    utf.write_bytes(b"run_name: caf\xe9\n")
    cases.append(("params: not UTF-8", ["validate", str(utf)], None))
    cases.append(("params: file missing", ["validate", str(tmp / "nope.yaml")], None))
    cases.append(("params: a folder", ["validate", str(tmp)], None))
    for name, sets in BAD_SETS.items():
        cases.append((f"--set: {name}", ["validate", str(SMOKE), *[a for s in sets for a in ("--set", s)]], None))
    for name, content in BAD_DATASETS.items():
        path = tmp / f"data-{len(cases)}.jsonl"
        path.write_bytes(content)
        sets = ["task.name=dataset", f"task.train.path={path}", f"task.test.path={path}", "task.num_train=20",
                "task.num_test=4", "task.seed_size=0", "warmup.max_steps=0", "train.baseline=false"]
        cases.append((f"dataset: {name}", ["run", str(SMOKE), "--output-dir", str(tmp / f"run-{len(cases)}"),
                                           *[a for s in sets for a in ("--set", s)]], None))
    cases.append(("dataset: path missing", ["run", str(SMOKE), "--output-dir", str(tmp / "run-missing"), "--set",
                                            "task.name=dataset", "--set", f"task.train.path={tmp}/no.jsonl", "--set",
                                            f"task.test.path={tmp}/no.jsonl"], None))
    for secret in SECRETS:
        cases.append((f"secret pasted as api_key_env ({secret[:3]}...)",
                      ["validate", str(SMOKE), "--set", f"openai.api_key_env={secret}"], secret))
    return cases


def folder_cases(tmp: Path) -> list[tuple[str, list[str], str | None]]:
    cases = []
    for name, content in {"a list": "[]", "empty object": "{}", "no stages": '{"config": {}}',
                          "stages a list": '{"config": {}, "stages": []}', "not JSON": "{run", "binary": "\x00\x01",
                          "config a string": '{"config": "demo", "stages": {}}',
                          "config with a bad value": '{"config": {"sample": {"n": -1}}, "stages": {}}'}.items():
        folder = tmp / f"runjson-{len(cases)}"
        folder.mkdir()
        (folder / "run.json").write_text(content)
        cases.append((f"run.json: {name} (status)", ["status", str(folder)], None))
        cases.append((f"run.json: {name} (run)", ["run", str(SMOKE), "--output-dir", str(folder)], None))
    cases.append(("status of a folder that is not a run", ["status", str(tmp)], None))
    cases.append(("status of a missing folder", ["status", str(tmp / "nope")], None))
    cases.append(("export of a folder that is not a run", ["export", str(tmp)], None))
    afile = tmp / "a-file"
    afile.write_text("x")
    cases.append(("--output-dir is a file", ["run", str(SMOKE), "--output-dir", str(afile)], None))
    cases.append(("--output-dir under a file", ["run", str(SMOKE), "--output-dir", str(afile / "run")], None))
    cases.append(("--iterations text", ["run", str(SMOKE), "--iterations", "x"], None))
    cases.append(("unknown command", ["frobnicate"], None))
    cases.append(("--redo of a stage that does not exist", ["run", str(SMOKE), "--output-dir", str(tmp / "redo"),
                                                            "--redo", "iter_09/04_train"], None))
    return cases


def sweep_inputs(tmp: Path) -> list[dict]:
    results = []
    original = pipeline.run_stage

    def stop(*args, **kwargs):
        raise ReachedStages

    pipeline.run_stage = stop  # every check before the first stage runs for real; the stage itself does not
    os.environ.pop("RFT_BENCH_UNSET_KEY", None)
    try:
        for name, argv, secret in params_cases(tmp) + folder_cases(tmp):
            code, output = invoke(argv)
            results.append({"case": name, "outcome": judge_error(code, output, secret),
                            "output": output.strip().splitlines()[-1][:200] if output.strip() else ""})
    finally:
        pipeline.run_stage = original
    return results


# ---------------------------------------------------------------------------------- real runs and their faults
def rft(*args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rft_helpers.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def whole(run_dir: Path) -> bool:
    out = rft("status", str(run_dir))
    return out.returncode == 0 and "damaged" not in out.stdout and "interrupted" not in out.stdout


def kill_during(run_dir: Path, stage: str) -> dict:
    """SIGKILL `rft run` (its whole process group: the kernel too) once `stage` is running, then run again."""
    process = subprocess.Popen([sys.executable, "-m", "rft_helpers.cli", "run", str(SMOKE), "--output-dir",
                                str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                               start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        state = run_dir / "run.json"
        if state.exists():
            try:
                if json.loads(state.read_text())["stages"].get(stage, {}).get("status") == "running":
                    time.sleep(4)
                    break
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    status = rft("status", str(run_dir)).stdout
    interrupted = "interrupted" in status or "running" not in status
    empty = [str(p) for p in run_dir.rglob("*.ipynb") if p.stat().st_size == 0 and not p.name.startswith(".")]
    again = rft("run", str(SMOKE), "--output-dir", str(run_dir))
    ok = again.returncode == 0 and whole(run_dir) and not empty
    return {"case": f"SIGKILL during {stage}, then rft run again",
            "outcome": "survived" if ok and interrupted else "lost" if again.returncode == 0 else "traceback",
            "output": f"status after the kill said interrupted: {interrupted}; empty notebooks: {len(empty)}"}


def damage_cases(run_dir: Path) -> list[dict]:
    """Damage a finished smoke run's files; status must name the stage and a rerun with --redo must repair it."""
    results = []
    damages = {
        "checkpoint config.json deleted": (run_dir / "iter_00/checkpoint/config.json", None, "iter_00/04_train"),
        "samples.jsonl truncated mid-line": (run_dir / "iter_01/samples.jsonl", "cut", "iter_01/01_sample"),
        "scored.jsonl edited": (run_dir / "iter_01/scored.jsonl", "edit", "iter_01/03_filter"),
        "predictions.jsonl deleted": (run_dir / "iter_01/predictions.jsonl", None, "iter_01/05_evaluate"),
    }
    for name, (path, how, stage) in damages.items():
        if how is None:
            path.unlink()
        elif how == "cut":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            path.write_text(path.read_text().replace('"kept": true', '"kept": false', 1))
        status = rft("status", str(run_dir)).stdout
        refused = rft("run", str(SMOKE), "--output-dir", str(run_dir))
        named = "damaged" in status and stage in status and refused.returncode == 2 and f"--redo {stage}" in refused.stderr
        repaired = rft("run", str(SMOKE), "--output-dir", str(run_dir), "--redo", stage)
        ok = named and repaired.returncode == 0 and whole(run_dir)
        results.append({"case": f"damage: {name}", "outcome": "survived" if ok else "silent" if not named else "lost",
                        "output": (refused.stderr.strip().splitlines() or [""])[-1][:200]})
    return results


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-kills", action="store_true", help="only the inputs (seconds, no real runs)")
    parser.add_argument("--verbose", action="store_true", help="each case, its outcome and last line, on stderr")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rft-faults-") as folder:
        tmp = Path(folder)
        results = sweep_inputs(tmp)
        if not args.no_kills:
            results.append(kill_during(tmp / "killed-sampling", "iter_01/01_sample"))
            results.append(kill_during(tmp / "killed-training", "iter_00/04_train"))
            results += damage_cases(tmp / "killed-sampling")
    counts = {key: sum(r["outcome"] == key for r in results)
              for key in ("clear_error", "survived", "traceback", "silent", "leaked", "lost")}
    problems = [r for r in results if r["outcome"] not in ("clear_error", "survived")]
    if args.verbose:
        for r in results:
            print(f"{r['outcome']:<12} {r['case']:<50} {r['output']}", file=sys.stderr)
    print(json.dumps({"tried": len(results), **counts, "seconds": round(time.perf_counter() - started, 1),
                      "problems": problems}))


if __name__ == "__main__":
    main_bench()
