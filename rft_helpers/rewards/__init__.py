"""Rewards: plain callables `(completions, **dataset_columns) -> list[float | None]`, looked up by name."""

from __future__ import annotations

import importlib
from typing import Callable

from .equivalence import are_equivalent, is_equivalent
from .outcome import completion_text, exact_answer, extract_answer

RewardFn = Callable[..., list]
REWARDS: dict[str, RewardFn] = {"exact_answer": exact_answer}


def get_reward(name: str) -> RewardFn:
    """A registered name, or a dotted path `package.module.function` to your own reward."""
    if name in REWARDS:
        return REWARDS[name]
    module, _, attr = name.rpartition(".")
    if module:
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            pass
    raise ValueError(f"filter.reward: unknown reward {name!r}; use one of {sorted(REWARDS)} or a dotted path")


__all__ = ["REWARDS", "are_equivalent", "RewardFn", "completion_text", "exact_answer", "extract_answer", "get_reward", "is_equivalent"]
