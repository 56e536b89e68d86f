"""The one interface every sampling engine implements: chat prompts in, n completions per prompt out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
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


class SamplingEngine(Protocol):
    name: str

    def generate(self, prompts: list[list[dict]], params: SamplingParams, progress: bool = False) -> list[list[Completion]]:
        """Return exactly `params.n` completions for each prompt, in prompt order."""
        ...

    def close(self) -> None:
        """Free the model (and GPU memory) before the next stage needs it."""
        ...


def check_counts(prompts: list, outputs: list[list[Completion]], n: int, engine: str) -> None:
    """Catch silent truncation: an engine must answer every prompt n times."""
    counts = [len(o) for o in outputs]
    if len(outputs) != len(prompts) or any(c != n for c in counts):
        raise RuntimeError(
            f"engine {engine}: expected {len(prompts)} prompts x {n} completions, got {len(outputs)} prompts "
            f"with {sorted(set(counts))} completions"
        )


def encode_chat(tokenizer, prompts: list[list[dict]]) -> list[list[int]]:
    """Prompt token ids through the model's chat template: the one encoding every engine and the trainer share."""
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]
