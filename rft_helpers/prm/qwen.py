"""Qwen2.5-Math-PRM style: the chat (system, question, then the steps joined by `<extra_0>` with one after the
last) through the PRM's own chat template; a two-class head is read at each `<extra_0>` and the step's score is
the probability of class 1.

The hub's models ship their head as remote code (`Qwen2ForProcessRewardModel`, loaded with trust_remote_code); a
model of the same shape saved as transformers' `*ForTokenClassification` with two labels loads without it (what
the tests build).
"""

from __future__ import annotations

import torch

from ..records import Messages
from .base import ProcessRewardModel
from .loading import check_exists, load_checked, tag_id

FORMAT = "qwen"
STEP_TAG = "<extra_0>"


class QwenPRM(ProcessRewardModel):
    format = FORMAT

    def __init__(self, model, tokenizer, path, batch_size: int = 32):
        super().__init__(model, tokenizer, path, batch_size)
        self.tag = tag_id(tokenizer, STEP_TAG, path)

    @classmethod
    def load(cls, path, dtype: torch.dtype = torch.float32) -> "QwenPRM":
        from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

        check_exists(path)
        architectures = AutoConfig.from_pretrained(str(path), trust_remote_code=True).architectures or []
        if any(a.endswith("ForTokenClassification") for a in architectures):
            model, tokenizer = load_checked(path, AutoModelForTokenClassification, dtype, labels=2)
        else:  # the hub's Qwen2ForProcessRewardModel: its forward returns the two-class logits first
            model, tokenizer = load_checked(path, AutoModel, dtype, trust_remote_code=True)
        return cls(model, tokenizer, path)

    def encode(self, prompt: Messages, steps: list[str]) -> tuple[list[int], list[int]]:
        answer = {"role": "assistant", "content": STEP_TAG.join(steps) + STEP_TAG}
        text = self.tokenizer.apply_chat_template(prompt + [answer], tokenize=False, add_generation_prompt=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, [i for i, token in enumerate(ids) if token == self.tag][: len(steps)]

    def good_probability(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1)[..., 1]
