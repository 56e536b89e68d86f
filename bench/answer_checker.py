"""How far the answer checker can be trusted, measured on MATH-500's gold answers.

- True equivalences: each gold answer against itself and against rewritings a grader must accept (\\dfrac and a/b
  for \\frac, decimals for terminating fractions, `x = 3` for `3`, a set or list in another order, `$...$`, spacing,
  \\left( for (, the letter for \\text{(C)}, 30 for 30^\\circ).
- False positives: each gold answer against 10 other problems' gold answers that differ from it (not the same
  text once spacing and \\dfrac are normalised, and not the same number).
- Worst time: hostile outputs (100 KB strings, deep nesting, unbalanced braces, power towers, huge factorials),
  each checked against gold answers; every check must come back, wrong, within a second.

Prints one JSON line; lists each miss on stderr. Usage: python bench/answer_checker.py [--path test500.jsonl]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

from rft_helpers.rewards import are_equivalent, is_equivalent
from rft_helpers.rewards.equivalence import as_number

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "math" / "test500.jsonl"
SIMPLE_FRACTION = re.compile(r"^(-?)\\d?frac\{(\d+)\}\{(\d+)\}$")
SET = re.compile(r"^\\\{(.*)\\\}$")
CHOICE = re.compile(r"^\\text\{\(([A-E])\)\}$")
DEGREES = re.compile(r"^(-?\d+(?:\.\d+)?)\^\\circ$")
THOUSANDS = re.compile(r"\d,(\\!)?\s*\d{3}")  # 10,\!080 or 58,500: a comma inside a number

HOSTILE = [
    "9" * 100_000,
    "The answer is " + "x" * 100_000,
    "\\frac{" * 120 + "1" + "}{2}" * 120,
    "\\sqrt{" * 150 + "2" + "}" * 150,
    "\\frac{1}{2" + "{" * 200,
    "2^{2^{2^{2^{2^{99}}}}}",
    "(10^{10^{10}})!",
    "9^{9^{9^{9}}}",
    "\\left(" * 200 + "1" + "\\right)" * 200,
    "+".join(f"x^{{{i}}}" for i in range(150)),
]


def rewritings(gold: str) -> list[str]:
    """Forms of `gold` that a grader must accept as the same answer."""
    forms = {f"${gold}$", gold.replace(" ", "")}
    if "," in gold and not THOUSANDS.search(gold):  # a list or a tuple: a space after each comma
        forms.add(" ".join(gold.replace(",", ", ").split()))
    if (m := SIMPLE_FRACTION.match(gold)) is not None:
        sign, numerator, denominator = m.groups()
        forms |= {f"{sign}\\dfrac{{{numerator}}}{{{denominator}}}", f"{sign}{numerator}/{denominator}"}
        value = Fraction(int(numerator), int(denominator)) * (-1 if sign else 1)
        if all(p in (2, 5) for p in _prime_factors(value.denominator)):
            forms.add(f"{float(value):.10g}")  # terminating decimal: 0.375
    if gold.lstrip("-").isdigit():
        forms |= {f"x = {gold}", f"{gold}.0"}
    if (m := SET.match(gold)) is not None and "," in m.group(1):
        forms.add("\\{" + ",".join(reversed(m.group(1).split(","))) + "\\}")
    if (m := CHOICE.match(gold)) is not None:
        forms.add(m.group(1))
    if (m := DEGREES.match(gold)) is not None:
        forms.add(m.group(1))
    if gold.startswith("(") and gold.endswith(")"):
        forms.add(f"\\left{gold[:-1]}\\right)")
    forms.discard(gold)
    return sorted(forms)


def _prime_factors(n: int) -> set[int]:
    factors, p = set(), 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            factors.add(p)
            n //= p
        p += 1
    return factors | ({n} if n > 1 else set())


def _normal(answer: str) -> str:
    """Spacing, \\dfrac, \\left/\\right, degrees and a leading `x =` removed: what graders treat as the same."""
    answer = answer.replace(" ", "").replace("\\dfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    answer = re.sub(r"^[a-z]=", "", answer)
    return re.sub(r"\^\{?\\circ\}?$", "", answer)


def different(a: str, b: str) -> bool:
    """Two gold answers that are certainly not the same answer (else the pair is no test of false positives)."""
    if _normal(a) == _normal(b):
        return False
    x, y = as_number(a), as_number(b)
    return x is None or y is None or x != y


def check_all(pairs: list[tuple[str, str]]) -> list[bool]:
    """In batches, which the worker pool checks in parallel."""
    verdicts = []
    for start in range(0, len(pairs), 256):
        chunk = pairs[start : start + 256]
        verdicts += are_equivalent([p for p, _ in chunk], [r for _, r in chunk])
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="MATH-500 JSONL (field: answer)")
    parser.add_argument("--negatives", type=int, default=10, help="other problems' answers per gold answer")
    args = parser.parse_args()

    golds = [json.loads(line)["answer"] for line in args.path.open()]
    rng = random.Random(0)
    positives = [(form, gold) for gold in golds for form in [gold, *rewritings(gold)]]
    negatives = []
    for i, gold in enumerate(golds):
        others = [g for j, g in enumerate(golds) if j != i and different(g, gold)]
        negatives += [(other, gold) for other in rng.sample(others, min(args.negatives, len(others)))]

    start = time.perf_counter()
    positive_verdicts = check_all(positives)
    negative_verdicts = check_all(negatives)
    checks_seconds = time.perf_counter() - start
    worst = 0.0
    for text in HOSTILE:
        for gold in rng.sample(golds, 3):
            for prediction, reference in [(text, gold), (gold, text)]:
                begin = time.perf_counter()
                if is_equivalent(prediction, reference):
                    print(f"hostile output judged equal to {gold!r}", file=sys.stderr)
                worst = max(worst, time.perf_counter() - begin)

    false_negatives = [pair for pair, ok in zip(positives, positive_verdicts) if not ok]
    false_positives = [pair for pair, ok in zip(negatives, negative_verdicts) if ok]
    for prediction, gold in false_negatives:
        print(f"missed: {prediction!r} vs gold {gold!r}", file=sys.stderr)
    for prediction, gold in false_positives:
        print(f"false positive: {prediction!r} vs gold {gold!r}", file=sys.stderr)
    print(json.dumps({
        "true_equivalences": len(positives),
        "accuracy": round(1 - len(false_negatives) / len(positives), 4),
        "false_positives": len(false_positives),
        "false_negatives": len(false_negatives),
        "worst_check_seconds": round(worst, 3),
        "negatives": len(negatives),
        "hostile_checks": len(HOSTILE) * 6,
        "checks_per_s": round((len(positives) + len(negatives)) / checks_seconds, 1),
    }))


if __name__ == "__main__":
    main()
