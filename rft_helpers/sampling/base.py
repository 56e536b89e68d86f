"""The one interface every sampling engine implements: chat prompts in, n completions per prompt out.

`SamplingEngine` does what every engine shares, once: greedy answers are identical, so a greedy request is
decoded once per prompt and repeated n times; the count of completions is checked (an engine that silently
drops some is an error); the engine names the model it serves and counts the tokens it used. An engine
implements `from_options` (its typed `Options`; an unknown option is an error) and `_generate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

from pydantic import BaseModel


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # sample among the k likeliest tokens only (0: all)
    min_p: float = 0.0  # drop tokens less likely than min_p x the likeliest one's probability (0: none)
    max_new_tokens: int = 64
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False  # always generate max_new_tokens (benchmarks with a fixed output length)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def as_record(self) -> dict:
        """The settings saved with every sample."""
        return asdict(self) | {"stop": list(self.stop)}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or stop string) or "length"
    stop_string: str | None = None  # the stop string that ended it (None: end of turn, length, or not reported)


class SamplingEngine(ABC):
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]  # what `get_engine(name, path, **options)` accepts

    def __init__(self, model_name: str):
        self.model_name = model_name  # the checkpoint path, or the model name an endpoint serves
        self._tokens = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}

    @classmethod
    @abstractmethod
    def from_options(cls, model_path, options: BaseModel) -> "SamplingEngine":
        """The engine serving the checkpoint at `model_path` with validated `options`."""

    def generate(self, prompts: list[list[dict]], params: SamplingParams, progress: bool = False) -> list[list[Completion]]:
        """Exactly `params.n` completions for each prompt, in prompt order."""
        draws = replace(params, n=1) if params.greedy else params  # greedy: decode once, repeat n times
        outputs = self._generate(prompts, draws, progress)
        check_counts(prompts, outputs, draws.n, self.name)
        self._tokens["requests"] += len(prompts)
        self._tokens["prompt_tokens"] += sum(completions[0].prompt_tokens for completions in outputs)
        self._tokens["completion_tokens"] += sum(c.completion_tokens for completions in outputs for c in completions)
        return [completions * params.n for completions in outputs] if params.greedy else outputs

    @abstractmethod
    def _generate(self, prompts: list[list[dict]], params: SamplingParams, progress: bool) -> list[list[Completion]]:
        """`params.n` completions for each prompt, in prompt order (greedy requests come with n=1)."""

    @property
    def usage(self) -> dict:
        """Requests and tokens so far: each prompt once (its n samples share it), every completion token."""
        return dict(self._tokens)

    def close(self) -> None:
        """Free the model (and GPU memory) before the next stage needs it."""


def check_counts(prompts: list, outputs: list[list[Completion]], n: int, engine: str) -> None:
    """Catch silent truncation: an engine must answer every prompt n times."""
    counts = [len(o) for o in outputs]
    if len(outputs) != len(prompts) or any(c != n for c in counts):
        raise RuntimeError(
            f"engine {engine}: expected {len(prompts)} prompts x {n} completions, got {len(outputs)} prompts "
            f"with {sorted(set(counts))} completions"
        )


def encode_chat(tokenizer, prompts: list[list[dict]]) -> list[list[int]]:
    """Prompt token ids through the model's chat template: the one encoding every engine and the trainer share.
    A prompt that ends with an assistant message is an answer begun (a PRM's rollout from a step's prefix): the
    model continues that message instead of starting a new one."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, **continuation(p)) for p in prompts]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def continuation(prompt: list[dict]) -> dict:
    """The chat template's options for `prompt`: continue its final assistant message, or open a new answer."""
    if prompt and prompt[-1]["role"] == "assistant":
        return {"continue_final_message": True}
    return {"add_generation_prompt": True}
