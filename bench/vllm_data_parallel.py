"""vLLM data parallel on this machine: the sample stage with one replica against `--replicas` replicas.

The SmolLM2 recipe's sample stage through vLLM (needs `make setup-vllm`): the same questions, n and seeds, once
with `vllm.data_parallel_size=1` (one engine on every core) and once with K replicas (each on its share of the
cores). Prints one JSON line: generation tokens/s (model loading excluded) and the stage's wall time (included).
Usage: python bench/vllm_data_parallel.py [--questions 128] [--replicas 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from rft_helpers.recipes import load_config
from rft_helpers.run import Run
from rft_helpers.stages import sample


def measure(folder: str, replicas: int, args) -> dict:
    config = load_config("params/smollm2_arithmetic.yaml", [
        "iterations=1", f"task.num_train={args.questions}", "eval.second_set=null",
        f"sample.num_questions={args.questions}", f"sample.n={args.n}", f"sample.max_new_tokens={args.new_tokens}",
        f"sample.chunk_questions={args.chunk}", "sample.engine=vllm", f"vllm.data_parallel_size={replicas}",
        "vllm.max_model_len=512", "vllm.kv_cache_gib=2",
    ])
    run = Run.create(config, os.path.join(folder, f"dp{replicas}"))
    start = time.perf_counter()
    sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)
    wall = time.perf_counter() - start
    sampling = run.metrics(1)["sampling"]
    return {"tokens": sampling["completion_tokens"], "tokens_per_s": sampling["tokens_per_s"],
            "stage_seconds": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=128)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=16, help="questions per chunk (the unit replicas share)")
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        one = measure(folder, 1, args)
        many = measure(folder, args.replicas, args)
    print(json.dumps({
        "model": "SmolLM2-135M-Instruct", "questions": args.questions, "n": args.n, "new_tokens": args.new_tokens,
        "cpus": len(os.sched_getaffinity(0)), "replicas": args.replicas,
        "tokens_per_s_1": one["tokens_per_s"], f"tokens_per_s_{args.replicas}": many["tokens_per_s"],
        "speedup": round(many["tokens_per_s"] / one["tokens_per_s"], 2),
        "one_replica": one, "replicas_run": many,
    }))


if __name__ == "__main__":  # vLLM spawns its workers: the guard keeps them from re-running the benchmark
    main()
