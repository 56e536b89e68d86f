"""Math-Shepherd style: a causal LM reads the question and the steps, each ending with the step tag ` ки`; at each
tag it predicts `+` (right) or `-` (wrong), and the step's score is softmax over just those two tokens' logits,
the share of `+` (as in peiyi9979/math-shepherd-mistral-7b-prm). It reads plain text, not a chat.
"""

from __future__ import annotations

import torch

from ..records import Messages
from .base import ProcessRewardModel
from .loading import load_checked, tag_id

FORMAT = "math_shepherd"
STEP_TAG, GOOD, BAD = "ки", "+", "-"


class MathShepherdPRM(ProcessRewardModel):
    format = FORMAT

    def __init__(self, model, tokenizer, path, batch_size: int = 32):
        super().__init__(model, tokenizer, path, batch_size)
        self.tag = tag_id(tokenizer, STEP_TAG, path)
        self.candidates = [tag_id(tokenizer, GOOD, path), tag_id(tokenizer, BAD, path)]

    @classmethod
    def load(cls, path, dtype: torch.dtype = torch.float32) -> "MathShepherdPRM":
        from transformers import AutoModelForCausalLM

        model, tokenizer = load_checked(path, AutoModelForCausalLM, dtype, chat_template=False)
        return cls(model, tokenizer, path)

    def encode(self, prompt: Messages, steps: list[str]) -> tuple[list[int], list[int]]:
        question = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
        text = f"{question} " + "\n".join(f"{step} {STEP_TAG}" for step in steps)
        ids = self.tokenizer(text)["input_ids"]
        return ids, [i for i, token in enumerate(ids) if token == self.tag][: len(steps)]

    def good_probability(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[..., self.candidates].softmax(-1)[..., 0]
