"""Weighted best-of-N: N whole answers per question, scored by the PRM; answers that are equivalent (judged by
the answer checker, so `1/2` and `0.5` count together) pool their scores, and the heaviest answer wins
(search-and-learn's weighted best-of-N, aggregated by `last` there by default)."""

from __future__ import annotations

from ..rewards import extract_answer
from ..rewards.voting import heaviest_groups
from .base import SearchResult, StepSearch


def weighted_best_of_n(search: StepSearch) -> list[SearchResult]:
    solutions = search.complete(search.settings.n)
    search.score([s for question in solutions for s in question])
    answers = [[extract_answer(s.text) for s in question] for question in solutions]
    weights = [[max(search.value(s), 0.0) for s in question] for question in solutions]
    chosen = heaviest_groups(answers, weights)
    return [search.result(question, index) for question, index in zip(solutions, chosen)]
