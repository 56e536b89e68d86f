"""The openai engine against a local OpenAI-compatible server that fails 20% of requests (500 or 429).

The server (rft_helpers.sampling.openai_server) serves the demo's tiny model, one generate at a time, with
`--latency` seconds of network-like delay per request outside the model lock. The engine sends every prompt
once with `n` choices, at concurrency 1 and then 16, retrying failures with backoff. Requests per second count
answered prompts over the wall time; `lost` counts prompts without their n completions and `duplicated` prompts
the server answered more than once (work paid twice). Prints one JSON line.
Usage: python bench/openai_engine.py [--prompts 64 --n 4 --fail-rate 0.2]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from rft_helpers.config import ScratchModelConfig
from rft_helpers.data import build_prompt
from rft_helpers.tasks import addition_problem
from rft_helpers.models import save_scratch_model
from rft_helpers.sampling import SamplingParams, get_engine
from rft_helpers.sampling.openai_server import OpenAICompatibleServer

DEMO_MODEL = ScratchModelConfig(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512)  # params/demo.yaml


def measure(model_engine, prompts, params, concurrency: int, args) -> dict:
    with OpenAICompatibleServer(model_engine, "demo", fail_rate=args.fail_rate, latency_s=args.latency,
                                seed=concurrency) as server:
        engine = get_engine("openai", "demo", base_url=server.base_url, model="demo", max_concurrency=concurrency,
                            max_retries=args.max_retries)
        start = time.perf_counter()
        outputs = engine.generate(prompts, params)
        seconds = time.perf_counter() - start
        stats = dict(server.stats)
        duplicated = sum(count > 1 for count in server.served.values())
    lost = sum(len(o) != params.n for o in outputs) + len(prompts) - len(outputs)
    return {"rps": round(len(prompts) / seconds, 2), "seconds": round(seconds, 2), "lost": lost,
            "duplicated": duplicated, "server_requests": stats["requests"], "injected_failures": stats["failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds of delay per request, outside the model")
    parser.add_argument("--max-retries", type=int, default=8)
    args = parser.parse_args()

    rng = random.Random(0)
    prompts = [build_prompt(addition_problem(rng, 2)[0]) for _ in range(args.prompts)]
    params = SamplingParams(n=args.n, temperature=0.7, max_new_tokens=args.new_tokens, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        model_engine = get_engine("transformers", save_scratch_model(DEMO_MODEL, Path(folder) / "tiny", seed=0))
        model_engine.generate(prompts[:2], params)  # warm-up
        c1 = measure(model_engine, prompts, params, 1, args)
        c16 = measure(model_engine, prompts, params, 16, args)
    print(json.dumps({
        "prompts": args.prompts, "n": args.n, "fail_rate": args.fail_rate, "latency_s": args.latency,
        "rps_c1": c1["rps"], "rps_c16": c16["rps"], "lost": c1["lost"] + c16["lost"],
        "duplicated": c1["duplicated"] + c16["duplicated"], "c1": c1, "c16": c16,
    }))


if __name__ == "__main__":
    main()
