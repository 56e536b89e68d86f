"""Is a predicted final answer mathematically equal to the reference? math-verify, with a hard time bound.

Plain numbers (`14`, `14.0`, `28/2`, `1,234`) compare exactly with Fractions in this process. Everything else goes
to math-verify (fractions against decimals, LaTeX forms, sets, intervals, percentages, units, `x=3` against `3`)
in a few worker processes (`verify_worker.py`). math-verify's own timeouts rely on `signal.alarm`: whole seconds,
main thread only. Here each check gets `timeout_s` inside its worker (a sub-second interval timer), and a worker
that has not answered soon after (sympy stuck in C, e.g. on `(10^{10^{10}})!`) is killed and replaced. A check
that runs out of time, or that math-verify cannot parse, counts as "not equal".

The workers are plain subprocesses (`python -m ...verify_worker`) fed JSON lines, not multiprocessing children:
those re-import the caller's main module, which runs a script without a `__main__` guard once per worker.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

DEFAULT_TIMEOUT_S = 0.4  # inside the worker; the hard kill comes HARD_KILL_MARGIN_S later
HARD_KILL_MARGIN_S = 0.15
STARTUP_TIMEOUT_S = 60.0
WORKERS = 3  # a killed worker takes ~0.5 s to restart: with three, the next check finds a warm one
MAX_ANSWER_CHARS = 1_000  # a final answer longer than this is not an answer (and not worth a sympy parse)

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)(/\d+)?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?$")  # 1,234 but not 1,5 (which may be a list)


def as_number(text: str) -> Fraction | None:
    """`14`, `-3.5`, `28/2`, `1,234` or `$12` as an exact Fraction; None for anything else."""
    cleaned = text.replace("$", "").strip()
    if _THOUSANDS.match(cleaned):
        cleaned = cleaned.replace(",", "")
    if not _NUMBER.match(cleaned):
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def _quick_verdict(prediction: str | None, reference: str | None) -> bool | None:
    """The verdict when it needs no math-verify; None when it does."""
    if prediction is None or reference is None or not prediction.strip() or not reference.strip():
        return False
    if len(prediction) > MAX_ANSWER_CHARS or len(reference) > MAX_ANSWER_CHARS:
        return False
    if " ".join(prediction.split()) == " ".join(reference.split()):
        return True
    a, b = as_number(prediction), as_number(reference)
    if a is not None and b is not None:
        return a == b
    return None


def is_equivalent(prediction: str | None, reference: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when the extracted `prediction` is mathematically equal to `reference`.

    >>> is_equivalent("0.5", "\\\\frac{1}{2}"), is_equivalent("28/2", "14"), is_equivalent("15", "14")
    (True, True, False)
    """
    return are_equivalent([prediction], [reference], timeout_s)[0]


def are_equivalent(predictions: list[str | None], references: list[str | None],
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> list[bool]:
    """`is_equivalent` for many pairs at once: the slow ones run in parallel in the worker processes."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    verdicts = [_quick_verdict(p, r) for p, r in zip(predictions, references)]
    pending = [i for i, v in enumerate(verdicts) if v is None]
    if len(pending) == 1:
        verdicts[pending[0]] = _verify_in_worker(references[pending[0]], predictions[pending[0]], timeout_s)
    elif pending:
        with ThreadPoolExecutor(WORKERS) as threads:  # one thread per worker process keeps them all busy
            results = threads.map(lambda i: _verify_in_worker(references[i], predictions[i], timeout_s), pending)
            for i, verdict in zip(pending, results):
                verdicts[i] = verdict
    return verdicts


# ------------------------------------------------------------------------------------------ worker processes
class _Worker:
    """One verify_worker process; one request at a time."""

    command = [sys.executable, "-m", "rft_helpers.rewards.verify_worker"]

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.ready = False
        self.start()

    def start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # importable even when not pip-installed
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env,
        )
        self.ready = False

    def _reply(self, timeout: float) -> str | None:
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline().strip() if readable else None

    def check(self, reference: str, prediction: str, timeout_s: float) -> bool:
        if not self.ready:  # a fresh process: imports and warms up math-verify (about 0.5 s)
            self.ready = self._reply(STARTUP_TIMEOUT_S) == "ready"
            if not self.ready:  # a broken install, not a hard answer: say so rather than judge everything wrong
                self.stop()
                raise RuntimeError(f"the answer checker's worker did not start ({' '.join(self.command[1:])}, "
                                   f"exit code {self.process.returncode}); is math-verify installed?")
        try:
            self.process.stdin.write(json.dumps([reference, prediction, timeout_s]) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.restart()
            return False
        reply = self._reply(timeout_s + HARD_KILL_MARGIN_S)
        if reply not in ("0", "1"):  # stuck past its own timer, or dead: replace it
            self.restart()
            return False
        return reply == "1"

    def restart(self) -> None:
        self.stop()
        self.start()  # starts now, so it is likely warm by the next check

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


_IDLE: queue.Queue | None = None
_START_LOCK = threading.Lock()


def _verify_in_worker(reference: str, prediction: str, timeout_s: float) -> bool:
    """Borrow an idle worker (started on first use), check, give it back; thread-safe."""
    global _IDLE
    with _START_LOCK:
        if _IDLE is None:
            _IDLE = queue.Queue()
            workers = [_Worker() for _ in range(WORKERS)]
            for worker in workers:
                _IDLE.put(worker)
            atexit.register(lambda: [w.stop() for w in workers])
    worker = _IDLE.get()
    try:
        return worker.check(reference, prediction, timeout_s)
    finally:
        _IDLE.put(worker)
