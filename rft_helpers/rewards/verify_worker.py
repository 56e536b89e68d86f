"""A math-verify worker process: one JSON request per line on stdin, `[reference, prediction, timeout_s]`; one
verdict per line on stdout, `1` (equal) or `0`. Started and killed by `equivalence.py`; never imported by it."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys


class CheckTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CheckTimeout


def _as_latex(answer: str) -> str:
    """An extracted answer as math-verify's LaTeX extraction expects it: inside \\boxed{} (a surrounding $...$
    dropped first: an escaped dollar inside, as in $\\$36$, would end it early)."""
    answer = answer.strip()
    if "\\boxed" in answer:
        return answer
    if len(answer) > 1 and answer[0] == answer[-1] == "$" and answer[-2] != "\\":
        answer = answer[1:-1]
    return f"\\boxed{{{answer}}}"


def check(reference: str, prediction: str, timeout_s: float) -> bool:
    from math_verify import parse, verify

    signal.setitimer(signal.ITIMER_REAL, timeout_s)  # sub-second, unlike math-verify's own signal.alarm
    try:
        gold = parse(_as_latex(reference), parsing_timeout=None)
        guess = parse(_as_latex(prediction), parsing_timeout=None)
        return bool(gold and guess and verify(gold, guess, timeout_seconds=None))
    except Exception:  # CheckTimeout, or anything sympy raises on odd input: not shown to be equal
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the replies
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": it is bounded here
    signal.signal(signal.SIGALRM, _on_alarm)
    check("1", "1", 5.0)  # load sympy and the LaTeX grammar before saying ready
    replies.write("ready\n")
    for line in sys.stdin:
        reference, prediction, timeout_s = json.loads(line)
        replies.write("1\n" if check(reference, prediction, timeout_s) else "0\n")


if __name__ == "__main__":
    main()
