"""A token-classification PRM in TRL's stepwise format: what this toolkit trains, and what TRL users bring.

The model reads the prompt (through the chat template) and then each step followed by the separator, tokenized
piece by piece as TRL's `PRMTrainer` did; a two-label head scores the last token of each separator, and the
step's score is the probability of label 1 ("right"). The folder's `prm_config.json` names the separator it was
trained with (default a newline).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..records import Messages
from .base import ProcessRewardModel
from .loading import load_checked, read_prm_config

FORMAT = "token_classification"


class TokenClassificationPRM(ProcessRewardModel):
    format = FORMAT

    def __init__(self, model, tokenizer, path, separator: str = "\n", batch_size: int = 32):
        super().__init__(model, tokenizer, path, batch_size)
        self.separator = separator
        self.separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"]

    @classmethod
    def load(cls, path, dtype: torch.dtype = torch.float32) -> "TokenClassificationPRM":
        from transformers import AutoModelForTokenClassification

        model, tokenizer = load_checked(path, AutoModelForTokenClassification, dtype, labels=2)
        return cls(model, tokenizer, path, read_prm_config(path).get("step_separator", "\n"))

    def encode(self, prompt: Messages, steps: list[str]) -> tuple[list[int], list[int]]:
        return encode_steps(self.tokenizer, prompt, steps, self.separator_ids)

    def good_probability(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1)[..., 1]


def prompt_ids(tokenizer, prompt: Messages) -> list[int]:
    """The prompt as the policy reads it before answering (chat template, generation prompt)."""
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_steps(tokenizer, prompt: Messages, steps: list[str], separator_ids: list[int]) -> tuple[list[int], list[int]]:
    """Prompt ids, then each step's ids and the separator's; the positions are each separator's last token."""
    ids, positions = prompt_ids(tokenizer, prompt), []
    for step in steps:
        ids += tokenizer(step, add_special_tokens=False)["input_ids"] + separator_ids
        positions.append(len(ids) - 1)
    return ids, positions


def write_prm_config(folder: Path, separator: str) -> None:
    (Path(folder) / "prm_config.json").write_text(json.dumps({"format": FORMAT, "step_separator": separator}))
