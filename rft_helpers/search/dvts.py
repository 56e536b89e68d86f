"""Diverse verifier tree search (DVTS, search-and-learn's `dvts`, batched over questions).

Per question, N/M independent subtrees. At every step each open subtree expands its one beam M ways and keeps
the best of those M by the PRM: subtrees never compete, which keeps the solutions diverse. Every finished
candidate is a solution; a subtree ends when the candidate it keeps has finished; after `max_steps` steps the
open subtrees run to the end of their answers. The answer is the highest-scoring solution.
"""

from __future__ import annotations

from .base import Candidate, SearchResult, StepSearch


def dvts(search: StepSearch) -> list[SearchResult]:
    settings = search.settings
    subtrees = settings.n // settings.beam_width
    questions = range(len(search.prompts))
    solutions: list[list[Candidate]] = [[] for _ in questions]
    beams = [Candidate(q, group=g) for q in questions for g in range(subtrees)]  # each subtree's open beam
    for step in range(settings.max_steps + 1):
        if not beams:
            break
        expansions = search.expand(beams, settings.beam_width, to_end=step == settings.max_steps)
        search.score_for_ranking([c for kids in expansions for c in kids])
        next_beams = []
        for kids in expansions:
            solutions[kids[0].question].extend(c for c in kids if c.finished)
            best = max(kids, key=lambda c: search.value(c))  # the first of equals
            if not best.finished:
                next_beams.append(best)
        beams = next_beams
    return [search.result(found, search.best(found)) for found in solutions]  # scored as they were ranked
