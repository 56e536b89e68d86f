"""Majority voting: N whole answers per question; the most common final answer wins (equivalent forms vote
together). No PRM: the baseline every PRM-guided strategy must beat at equal tokens."""

from __future__ import annotations

from ..rewards import extract_answer
from ..rewards.voting import heaviest_groups
from .base import SearchResult, StepSearch


def majority(search: StepSearch) -> list[SearchResult]:
    solutions = search.complete(search.settings.n)
    answers = [[extract_answer(s.text) for s in question] for question in solutions]
    chosen = heaviest_groups(answers, [[1.0] * len(a) for a in answers])
    return [search.result(question, index) for question, index in zip(solutions, chosen)]
