"""The one PRM interface: chat prompts and each completion's steps in, one score in [0, 1] per step out.

A PRM family says how it lays the steps out for its model and where it reads each step's score (`encode`), and
how a score comes out of the logits there (`good_probability`); batching, padding and gathering are shared here.
`aggregate` turns step scores into one number (min, prod, last, mean or min_before_last), as search-and-learn's
`aggregate_scores`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar

import torch
from ..progress import progress as progress_bar

from ..records import Messages

AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "min": min,  # ms-swift's choice: a chain is as good as its worst step
    "prod": math.prod,  # the chance every step is right, if the scores were independent probabilities
    "last": lambda scores: scores[-1],  # search-and-learn's default for weighted best-of-N
    "mean": lambda scores: sum(scores) / len(scores),
    # the worst step before the answer (the answer alone for one step): the outcome reward judges the answer, and a
    # PRM's score there mostly guesses the outcome, which would pull right answers down with it
    "min_before_last": lambda scores: min(scores[:-1] or scores),
}


def aggregate(step_scores: list[float], how: str = "min") -> float | None:
    """One score for a completion from its step scores; None when it has no steps."""
    if how not in AGGREGATIONS:
        raise ValueError(f"prm aggregation: unknown {how!r}; choose one of {sorted(AGGREGATIONS)}")
    return AGGREGATIONS[how](step_scores) if step_scores else None


class ProcessRewardModel(ABC):
    """A PRM loaded with transformers: `score(prompts, steps)` gives each step's probability of being right."""

    format: ClassVar[str]

    def __init__(self, model, tokenizer, path: str | Path, batch_size: int = 32):
        self.model, self.tokenizer, self.path, self.batch_size = model.eval(), tokenizer, str(path), batch_size

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> "ProcessRewardModel":
        """The PRM at `path` (a folder or a hub id); a ConfigError naming the path when it is not one."""

    @abstractmethod
    def encode(self, prompt: Messages, steps: list[str]) -> tuple[list[int], list[int]]:
        """The token ids the model reads, and for each step the position whose logits score it."""

    @abstractmethod
    def good_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """(batch, length, classes or vocabulary) logits -> (batch, length) probability that a step is right."""

    @torch.inference_mode()
    def score(self, prompts: list[Messages], steps: list[list[str]], progress: bool = False) -> list[list[float]]:
        """Each completion's step scores, in order (an empty list for a completion without steps). Identical
        inputs (the same prompt and steps, common once a policy repeats itself) go through the model once."""
        encoded = [self.encode(prompt, completion_steps) if completion_steps else ([], [])
                   for prompt, completion_steps in zip(prompts, steps)]
        keys = [tuple(ids) for ids, _ in encoded]
        first: dict[tuple[int, ...], int] = {}  # token ids -> the first completion that has them
        for i, key in enumerate(keys):
            if key:
                first.setdefault(key, i)
        order = sorted(first.values(), key=lambda i: len(encoded[i][0]))
        scores: list[list[float]] = [[] for _ in encoded]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = self.model.device
        for batch in progress_bar(batches, desc="PRM", disable=not progress):
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # right padding: each row's positions stay where encode put them
                ids[row, : len(encoded[i][0])] = torch.tensor(encoded[i][0])
                mask[row, : len(encoded[i][0])] = 1
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            good = self.good_probability(logits.float()).cpu()
            for row, i in enumerate(batch):
                scores[i] = good[row, encoded[i][1]].tolist()
        return [list(scores[first[key]]) if key else [] for key in keys]
