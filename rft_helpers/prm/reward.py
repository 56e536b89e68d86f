"""A PRM as a reward: TRL's reward signature, each completion's steps scored and aggregated to one number, so the
filter, DPO pairs and GRPO (one reward among several, with weights) use a PRM as they use any reward."""

from __future__ import annotations

from pathlib import Path

from ..records import completion_text
from ..steps import DEFAULT_SEPARATOR, split_steps
from .base import ProcessRewardModel, aggregate
from .registry import load_prm


class PRMReward:
    """`reward(completions, prompts=...)` -> the aggregated step score of each completion. Picklable (GRPO's
    processes and the launcher pass it around): the model loads on the first call."""

    def __init__(self, path: str | Path, aggregation: str = "min", separator: str = DEFAULT_SEPARATOR,
                 format: str = "auto", dtype: str = "float32"):
        self.path, self.aggregation, self.separator, self.format = str(path), aggregation, separator, format
        self.dtype = dtype
        self.__name__ = "prm"  # TRL logs each reward under its function's name
        self._prm: ProcessRewardModel | None = None

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_prm": None}

    @property
    def prm(self) -> ProcessRewardModel:
        if self._prm is None:
            self._prm = load_prm(self.path, self.format, self.dtype)
        return self._prm

    def step_scores(self, prompts: list, completions: list) -> list[list[float]]:
        steps = [split_steps(completion_text(c), self.separator) for c in completions]
        return self.prm.score(prompts, steps)

    def __call__(self, completions: list, prompts: list | None = None, prompt: list | None = None,
                 **kwargs) -> list[float | None]:
        """GRPO passes `prompts`; the toolkit's record columns call it `prompt`."""
        scores = self.step_scores(prompts if prompts is not None else prompt, completions)
        return [aggregate(step_scores, self.aggregation) for step_scores in scores]
