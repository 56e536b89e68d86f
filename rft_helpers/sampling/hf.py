"""transformers engine: batched `generate` with n samples per prompt sharing one prompt encoding.

Prompts are sorted by length so each batch pads little and padded on the left so every row's new tokens line up.
Each prompt is encoded once; its KV cache is then copied to its n samples, which `generate` continues (on a CPU
the prompt pass was nearly half the sampling time when each of the n samples re-encoded it).

Sampling runs `generate` in its greedy mode behind a logits processor that draws the token itself
(`InverseCDFSampler`): `torch.multinomial` draws an exponential variate for every vocabulary entry, which on a CPU
was 29% of SmolLM2's sampling time (256 rows x 49k vocabulary per step); one uniform per row does the same job.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from ..progress import progress as progress_bar
from transformers import (LogitsProcessor, LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper,
                          TopKLogitsWarper, TopPLogitsWarper)

from .attention import cpu_attention
from .base import Completion, SamplingEngine, SamplingParams, encode_chat


class TransformersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field("float32", description="weights dtype")
    batch_size: int = Field(64, gt=0, description="prompts per generate call (each expands to n sequences)")


class TransformersEngine(SamplingEngine):
    name = "transformers"
    Options = TransformersOptions
    share_prompt_cache = True  # False: each sample re-encodes its prompt, for comparison

    def __init__(self, model, tokenizer, batch_size: int = 64, model_name: str | None = None):
        super().__init__(model_name or str(getattr(model, "name_or_path", "")))
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.tokenizer.padding_side = "left"

    @classmethod
    def from_options(cls, model_path, options: TransformersOptions) -> "TransformersEngine":
        from ..models import load_model, load_tokenizer

        model = load_model(model_path, options.dtype)
        if not torch.cuda.is_available():
            # SDPA's CPU kernel decoded about 30% slower than plain attention on SmolLM2-135M; grouped_eager is
            # plain attention without copying the KV cache to every query head (attention.py).
            model.set_attn_implementation(cpu_attention(model.config))
        return cls(model, load_tokenizer(model_path), batch_size=options.batch_size, model_name=str(model_path))

    def encode(self, prompts: list[list[dict]]) -> list[list[int]]:
        return encode_chat(self.tokenizer, prompts)

    def close(self) -> None:
        del self.model

    @torch.inference_mode()
    def _generate(self, prompts: list[list[dict]], params: SamplingParams, progress: bool) -> list[list[Completion]]:
        encoded = self.encode(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        outputs: list[list[Completion]] = [[] for _ in prompts]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch_index, batch in enumerate(progress_bar(batches, desc="generate", disable=not progress)):
            # One seed per batch makes a run reproducible for a given batch size.
            generator = torch.Generator(self.model.device).manual_seed(params.seed + batch_index)
            texts = self._generate_batch([encoded[i] for i in batch], params, generator)
            for i, completions in zip(batch, texts):
                outputs[i] = completions
        return outputs

    def _generate_batch(
        self, batch_ids: list[list[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[list[Completion]]:
        tok = self.tokenizer
        enc = tok.pad({"input_ids": batch_ids}, return_tensors="pt", padding=True)
        device = self.model.device
        input_ids, attention_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        sampler = LogitsProcessorList()
        if not params.greedy:
            sampler.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k:
                sampler.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                sampler.append(TopPLogitsWarper(params.top_p))
            if params.min_p:
                sampler.append(MinPLogitsWarper(params.min_p))
            sampler.append(InverseCDFSampler(generator))
        copies = params.n
        cache = None
        if self.share_prompt_cache and copies > 1 and input_ids.shape[1] > 1:
            # Encode each prompt once, then give its n samples copies of that KV cache: generate only has the last
            # prompt token left to process, instead of n full prompts.
            cache = self._prefill(input_ids[:, :-1], attention_mask[:, :-1])
            cache.batch_repeat_interleave(copies)
        input_ids, attention_mask = input_ids.repeat_interleave(copies, 0), attention_mask.repeat_interleave(copies, 0)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            past_key_values=cache,
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=params.max_new_tokens if params.ignore_eos else None,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            stop_strings=list(params.stop) or None,
            tokenizer=tok if params.stop else None,
            do_sample=False,  # greedy picks the one token InverseCDFSampler leaves standing
            logits_processor=sampler,
        )
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        return [[self._to_completion(seq, len(ids), params) for seq in new_tokens[row * copies : (row + 1) * copies]]
                for row, ids in enumerate(batch_ids)]

    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """The KV cache of left-padded prompts, with the positions generate itself would use."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=True).past_key_values

    def _to_completion(self, seq: list[int], prompt_len: int, params: SamplingParams) -> Completion:
        tok = self.tokenizer
        finish = "length"
        if tok.eos_token_id in seq and not params.ignore_eos:
            seq, finish = seq[: seq.index(tok.eos_token_id) + 1], "stop"
        else:
            while seq and seq[-1] == tok.pad_token_id:
                seq = seq[:-1]
        text = tok.decode(seq, skip_special_tokens=True)
        stopped_at = None
        cuts = [(text.index(stop), stop) for stop in params.stop if stop in text]
        if cuts:  # the earliest stop string ends it
            at, stopped_at = min(cuts)
            text, finish = text[:at], "stop"
        return Completion(text=text, prompt_tokens=prompt_len, completion_tokens=len(seq), finish_reason=finish,
                          stop_string=stopped_at)


class InverseCDFSampler(LogitsProcessor):
    """Draw each row's next token from softmax(scores) and leave only that token possible.

    Put last in the processor list of a greedy `generate`: its argmax is then the sampled token. One uniform per row,
    placed on the cumulative distribution, samples exactly what `torch.multinomial` samples, at a tenth of its cost
    on a CPU for a large vocabulary.
    """

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cumulative = torch.softmax(scores.float(), dim=-1).cumsum(dim=-1)
        uniform = torch.rand(scores.shape[0], 1, generator=self.generator, device=scores.device)
        # right=True skips zero-probability tokens (flat steps of the CDF); u < 1 keeps the draw below the total.
        tokens = torch.searchsorted(cumulative, uniform * cumulative[:, -1:], right=True).clamp(max=scores.shape[-1] - 1)
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, tokens, 0.0)
