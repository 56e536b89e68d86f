"""transformers engine: batched `generate` with n samples per prompt sharing one prompt encoding.

Prompts are sorted by length so each batch pads little, padded on the left so every row's new tokens line up,
and expanded to n sequences inside `generate` (`num_return_sequences`), which keeps the KV cache per sequence.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .base import Completion, SamplingParams, check_counts


class TransformersEngine:
    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.tokenizer.padding_side = "left"

    def encode(self, prompts: list[list[dict]]) -> list[list[int]]:
        texts = [self.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def generate(self, prompts: list[list[dict]], params: SamplingParams, progress: bool = False) -> list[list[Completion]]:
        encoded = self.encode(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        outputs: list[list[Completion]] = [[] for _ in prompts]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch_index, batch in enumerate(tqdm(batches, desc="generate", disable=not progress)):
            # One seed per batch makes a run reproducible for a given batch size.
            torch.manual_seed(params.seed + batch_index)
            texts = self._generate_batch([encoded[i] for i in batch], params)
            for i, completions in zip(batch, texts):
                outputs[i] = completions
        check_counts(prompts, outputs, params.n, self.name)
        return outputs

    def _generate_batch(self, batch_ids: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        tok = self.tokenizer
        enc = tok.pad({"input_ids": batch_ids}, return_tensors="pt", padding=True)
        device = self.model.device
        sample_kwargs = {"do_sample": False} if params.greedy else {
            "do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0
        }
        copies = 1 if params.greedy else params.n  # greedy answers are identical: decode once, repeat n times
        out = self.model.generate(
            input_ids=enc["input_ids"].to(device),
            attention_mask=enc["attention_mask"].to(device),
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=copies,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            stop_strings=list(params.stop) or None,
            tokenizer=tok if params.stop else None,
            **sample_kwargs,
        )
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        results = []
        for row, ids in enumerate(batch_ids):
            completions = []
            for seq in new_tokens[row * copies : (row + 1) * copies]:
                completions.append(self._to_completion(seq, len(ids), params))
            results.append(completions * (params.n // copies))
        return results

    def _to_completion(self, seq: list[int], prompt_len: int, params: SamplingParams) -> Completion:
        tok = self.tokenizer
        finish = "length"
        if tok.eos_token_id in seq:
            seq, finish = seq[: seq.index(tok.eos_token_id) + 1], "stop"
        else:
            while seq and seq[-1] == tok.pad_token_id:
                seq = seq[:-1]
        text = tok.decode(seq, skip_special_tokens=True)
        for stop in params.stop:
            if stop in text:
                text, finish = text[: text.index(stop)], "stop"
        return Completion(text=text, prompt_tokens=prompt_len, completion_tokens=len(seq), finish_reason=finish)
