"""Outcome rewards: is the final answer right?

Rewards follow TRL's GRPO reward signature, so the same callables score samples in 03_filter and (later) drive
GRPOTrainer: `reward(completions, answer, **kwargs) -> list[float | None]`, where a completion is a string or a
list of chat messages and None means "cannot judge" (e.g. no reference answer).
"""

from __future__ import annotations

import re

from ..records import completion_text
from .equivalence import are_equivalent

_ANSWER_PATTERNS = [
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"[Aa]nswer(?: is)?\s*[:=]?\s*([^\n]+)"),
]
_ANY_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces allowed); None if absent or unbalanced.

    >>> last_boxed(r"so $\\boxed{\\frac{1}{2}}$")
    '\\\\frac{1}{2}'
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip()
    return None


def extract_answer(text: str) -> str | None:
    """The final answer: last `\\boxed{..}`, else `#### N`, else the last 'Answer: ..' line, else the last number
    in the text (the usual GSM8K convention, for chat models that answer in prose); None if absent.

    >>> extract_answer("3+4=7\\nAnswer: 7")
    '7'
    >>> extract_answer("So 1,200 + 34 = 1,234.")
    '1234'
    """
    boxed = last_boxed(text)
    if boxed:
        return boxed
    for pattern in _ANSWER_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            answer = matches[-1].strip().rstrip(".").strip()
            return answer or None
    numbers = _ANY_NUMBER.findall(text)
    return numbers[-1].rstrip(",").replace(",", "") if numbers else None


def exact_answer(completions: list, answer: list, **kwargs) -> list[float | None]:
    """1.0 when the extracted final answer is mathematically equal to the reference (math-verify, bounded in time),
    0.0 otherwise, None without a reference.

    >>> exact_answer(["2+2=4\\nAnswer: 4", "Answer: 5"], answer=["4", "4"])
    [1.0, 0.0]
    """
    if len(completions) != len(answer):
        raise ValueError(f"{len(completions)} completions for {len(answer)} answers")
    judged = [i for i, ref in enumerate(answer) if ref is not None and str(ref).strip()]
    verdicts = are_equivalent([extract_answer(completion_text(completions[i])) for i in judged],
                              [str(answer[i]) for i in judged])
    scores: list[float | None] = [None] * len(completions)
    for i, verdict in zip(judged, verdicts):
        scores[i] = float(verdict)
    return scores
