"""Best-of-N: N whole answers per question, each scored by the PRM; the one with the highest aggregated score
wins (search-and-learn's `best_of_n`)."""

from __future__ import annotations

from .base import SearchResult, StepSearch


def best_of_n(search: StepSearch) -> list[SearchResult]:
    solutions = search.complete(search.settings.n)
    search.score([s for question in solutions for s in question])
    return [search.result(question, search.best(question)) for question in solutions]
