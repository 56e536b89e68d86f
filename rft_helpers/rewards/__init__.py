"""Rewards: plain callables `(completions, **dataset_columns) -> list[float | None]`, looked up by name.

The same callables score samples in 03_filter, answers in 05_evaluate and GRPO's completions in 04_train;
`score_rows` is the one place that calls them on records.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

from ..exceptions import ConfigError
from .equivalence import are_equivalent, is_equivalent
from .outcome import completion_text, exact_answer, extract_answer

RewardFn = Callable[..., list]
REWARDS: dict[str, RewardFn] = {"exact_answer": exact_answer}
REWARD_COLUMNS = ("id", "prompt", "answer")  # the dataset columns a reward receives as keyword arguments


def get_reward(name: str, field: str = "filter.reward") -> RewardFn:
    """A registered name, or a dotted path `package.module.function` to your own reward. `field` names the
    parameter in errors; a module that is found but fails to import is reported with its file and its error."""
    if name in REWARDS:
        return REWARDS[name]
    module_name, _, attr = name.rpartition(".")
    module = _import_user_module(module_name, name, field) if module_name else None
    if module is None:
        raise ConfigError(f"{field}: unknown reward {name!r}; use one of {sorted(REWARDS)} or a dotted path "
                          "package.module.function to your own")
    if not callable(getattr(module, attr, None)):
        raise ConfigError(f"{field}: {module_name} ({module.__file__}) has no function {attr!r}")
    return getattr(module, attr)


def _import_user_module(module_name: str, name: str, field: str):
    """The module, or None when there is no such module; a module that exists but fails to import (a missing
    dependency, a syntax error) is a ConfigError naming its file and the error."""
    try:
        spec = importlib.util.find_spec(module_name)  # imports the parent packages
    except ModuleNotFoundError:
        return None
    except Exception as e:
        raise ConfigError(f"{field}: {name!r}: importing {module_name} failed: {_one_line(e)}") from None
    if spec is None:
        return None
    try:
        return importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(f"{field}: {name!r}: importing {module_name} ({spec.origin}) failed: "
                          f"{_one_line(e)}") from None


def _one_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def score_rows(rows: list[dict], reward_fn: RewardFn, reward_name: str) -> list[float | None]:
    """The reward of each row (a sample or an answer, with its completion and dataset columns), in one batch
    call as GRPO makes it; one score per row is checked."""
    if not rows:
        return []
    columns = {key: [row.get(key) for row in rows] for key in REWARD_COLUMNS}
    scores = list(reward_fn(completions=[row["completion"] for row in rows], **columns))
    if len(scores) != len(rows):
        raise RuntimeError(f"reward {reward_name}: returned {len(scores)} scores for {len(rows)} completions")
    return scores


__all__ = ["REWARDS", "REWARD_COLUMNS", "RewardFn", "are_equivalent", "completion_text", "exact_answer",
           "extract_answer", "get_reward", "is_equivalent", "score_rows"]
