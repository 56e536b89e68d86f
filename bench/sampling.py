"""Sampling speed of the transformers engine against a naive loop (one `generate` call per sample).

The demo's tiny model (built from its config, random weights, character tokenizer), the demo task's questions
through the chat template, n samples each at temperature 0.7, every sample exactly `--new-tokens` long (EOS
ignored) so both ways do the same work. The naive loop runs on the first `--naive-samples` samples only (it is
slow); tokens/s compare. Prints one JSON line. Usage: python bench/sampling.py [--prompts 64 --n 8]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from rft_helpers.config import ScratchModelConfig
from rft_helpers.data import build_prompt
from rft_helpers.tasks import addition_problem
from rft_helpers.models import save_scratch_model
from rft_helpers.sampling import SamplingParams, get_engine

DEMO_MODEL = ScratchModelConfig(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512)  # params/demo.yaml


def tokens_per_s(engine, prompts, params) -> dict:
    start = time.perf_counter()
    outputs = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for completions in outputs for c in completions)
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64, help="engine: prompts per generate call")
    parser.add_argument("--naive-samples", type=int, default=48)
    args = parser.parse_args()

    rng = random.Random(0)
    prompts = [build_prompt(addition_problem(rng, 2)[0]) for _ in range(args.prompts)]
    params = SamplingParams(n=args.n, temperature=0.7, max_new_tokens=args.new_tokens, seed=0, ignore_eos=True)
    one = SamplingParams(n=1, temperature=0.7, max_new_tokens=args.new_tokens, seed=0, ignore_eos=True)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = save_scratch_model(DEMO_MODEL, Path(folder) / "tiny", seed=0)
        engine = get_engine("transformers", model_dir, batch_size=args.batch_size)
        naive = get_engine("transformers", model_dir, batch_size=1)
        engine.generate(prompts[:2], params)  # warm-up: first-call allocations are not sampling speed
        batched = tokens_per_s(engine, prompts, params)
        # One generate call per sample: each of a prompt's n samples is its own call, on the first prompts.
        per_sample = [p for p in prompts for _ in range(args.n)][: args.naive_samples]
        looped = tokens_per_s(naive, per_sample, one)
    print(json.dumps({
        "model": "demo scratch model", "prompts": args.prompts, "n": args.n, "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(), "engine_tokens_per_s": batched["tokens_per_s"],
        "naive_tokens_per_s": looped["tokens_per_s"],
        "speedup": round(batched["tokens_per_s"] / looped["tokens_per_s"], 1), "engine": batched, "naive": looped,
    }))


if __name__ == "__main__":
    main()
