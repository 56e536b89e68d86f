"""Search strategies, one module each with one signature: `strategy(search: StepSearch) -> [SearchResult]`, one
result per question. `StepSearch` (base.py) holds the questions, the engine, the PRM and the settings, makes every
engine and PRM call and counts the compute; a strategy is only its rule for what to expand and keep.

`run_search` is what the sample and evaluate stages call."""

from __future__ import annotations

from typing import Callable

from ..config import needs_prm
from ..prm import ProcessRewardModel
from ..records import Messages
from ..sampling import SamplingEngine
from .base import Candidate, Compute, SearchResult, SearchSettings, StepSearch
from .beam_search import beam_search
from .best_of_n import best_of_n
from .dvts import dvts
from .majority import majority
from .mcts import mcts
from .weighted_best_of_n import weighted_best_of_n

Strategy = Callable[[StepSearch], list[SearchResult]]
STRATEGIES: dict[str, Strategy] = {"majority": majority, "best_of_n": best_of_n,
                                   "weighted_best_of_n": weighted_best_of_n, "beam_search": beam_search,
                                   "dvts": dvts, "mcts": mcts}


def run_search(strategy: str, engine: SamplingEngine, prm: ProcessRewardModel | None, prompts: list[Messages],
               settings: SearchSettings, outcome=None) -> tuple[list[SearchResult], Compute]:
    """Each question's solutions and chosen answer by `strategy`, and what it spent. `outcome(question indices,
    texts) -> rewards` judges rollouts against the references, a batch per call (MCTS on training questions)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"search strategy: unknown {strategy!r}; choose one of {sorted(STRATEGIES)}")
    if prm is None and needs_prm(strategy, settings.mcts_value, outcome is not None):
        raise ValueError(f"search strategy {strategy} needs a PRM (prm.model)")
    search = StepSearch(engine, prm, prompts, settings, outcome)
    return STRATEGIES[strategy](search), search.compute


__all__ = ["STRATEGIES", "Candidate", "Compute", "SearchResult", "SearchSettings", "StepSearch", "needs_prm",
           "run_search"]
