"""Beam search guided by the PRM (search-and-learn's `beam_search`, batched over questions).

Per question: the first step is sampled N ways; at every step the open beams are scored, the best N/M kept and
each expanded M ways (N candidates again). A beam that finishes (end of turn) leaves the beam and becomes a
solution; a question stops once it has N solutions or no open beam; after `max_steps` steps the open beams run
to the end of their answers. All questions' open beams go to the engine in one call per step. The answer is the
highest-scoring solution.
"""

from __future__ import annotations

from .base import Candidate, SearchResult, StepSearch


def keep_best(search: StepSearch, candidates: list[Candidate], keep: int) -> list[Candidate]:
    """The `keep` highest-valued candidates, best first (the first of equals)."""
    order = sorted(range(len(candidates)), key=lambda i: (-search.value(candidates[i]), i))
    return [candidates[i] for i in order[:keep]]


def beam_search(search: StepSearch) -> list[SearchResult]:
    settings = search.settings
    keep = settings.n // settings.beam_width
    questions = range(len(search.prompts))
    solutions: list[list[Candidate]] = [[] for _ in questions]
    beams = [[Candidate(q)] for q in questions]  # the open beams of each question
    for step in range(settings.max_steps + 1):
        last = step == settings.max_steps
        parents = [b for q in questions for b in beams[q] if len(solutions[q]) < settings.n]
        if not parents:
            break
        width = settings.n if step == 0 else settings.beam_width
        children = [c for kids in search.expand(parents, width, to_end=last) for c in kids]
        search.score_for_ranking(children)
        beams = [[] for _ in questions]
        for child in children:
            (solutions if child.finished else beams)[child.question].append(child)
        beams = [keep_best(search, open_beams, keep) for open_beams in beams]
    return [search.result(found, search.best(found)) for found in solutions]  # scored as they were ranked
