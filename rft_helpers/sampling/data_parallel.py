"""vLLM data parallel: `vllm.data_parallel_size` replicas of the model share the sample stage's chunks.

This follows vLLM's offline recipe (examples/offline_inference/data_parallel.py): one process per replica, each
with its own `tensor_parallel_size` GPUs through `CUDA_VISIBLE_DEVICES` (on CPU: its own cores through
`VLLM_CPU_OMP_THREADS_BIND`). Replicas of a dense model are independent vLLM instances (vLLM refuses its offline
data-parallel mode for them). Replicas of a MoE model step together in vLLM's data-parallel mode, told their place
by `VLLM_DP_RANK`, `VLLM_DP_SIZE` and `VLLM_DP_MASTER_*`, so each process keeps its engine up until every rank has
finished (a file barrier). The MoE path has not been run: no MoE model fits this machine. Each process samples every `size`-th unfinished
chunk and writes it to samples.parts/ as it finishes, so a crash loses at most one chunk per replica and a rerun
samples only what is missing. Each replica's output goes to samples.parts/rank_K.log.

This module starts, places and watches the replica processes; what each one runs is the sample stage's
(`rft_helpers.stages.sample_replica`), named by the caller, so the engine layer does not reach up into the stages.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..exceptions import ConfigError


def assign_chunks(chunks: list[int], size: int) -> list[list[int]]:
    """Round robin, so replicas get near-equal work even when the first chunks were already done."""
    return [chunks[rank::size] for rank in range(size)]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def is_moe(model_path: str) -> bool:
    """Whether the model routes tokens to experts (its config counts them), as vLLM decides it."""
    from transformers import AutoConfig

    from ..models import adapter_base, is_adapter

    config = AutoConfig.from_pretrained(adapter_base(model_path) if is_adapter(model_path) else model_path)
    config = getattr(config, "text_config", None) or config
    return any((getattr(config, key, 0) or 0) > 0
               for key in ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"))


def rank_environment(rank: int, size: int, tensor_parallel_size: int, master_port: int,
                     gpus: list[str], cpus: list[int], moe: bool = False) -> dict[str, str]:
    """What one replica's process is told: the GPUs (or CPU cores) it owns, and for a MoE model its
    data-parallel rank."""
    env = {"VLLM_DP_RANK": str(rank), "VLLM_DP_RANK_LOCAL": str(rank), "VLLM_DP_SIZE": str(size),
           "VLLM_DP_MASTER_IP": "127.0.0.1", "VLLM_DP_MASTER_PORT": str(master_port)} if moe else {}
    if gpus:
        needed = size * tensor_parallel_size
        if len(gpus) < needed:
            raise ConfigError(
                f"vllm.data_parallel_size: {size} replicas x tensor_parallel_size {tensor_parallel_size} need "
                f"{needed} GPUs, but {len(gpus)} are visible"
            )
        return env | {"CUDA_VISIBLE_DEVICES": ",".join(gpus[rank * tensor_parallel_size:(rank + 1) * tensor_parallel_size])}
    if len(cpus) < size:
        raise ConfigError(f"vllm.data_parallel_size: {size} replicas need at least {size} CPU cores, {len(cpus)} are free")
    share = len(cpus) // size
    return env | {"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in cpus[rank * share:(rank + 1) * share])}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_data_parallel(request: dict, worker_module: str, chunks: list[int], parts: Path, size: int,
                         tensor_parallel_size: int, moe: bool = False, progress=None) -> list[dict]:
    """Run `python -m worker_module REQUEST_FILE` on `size` replica processes, each given `request` plus its
    rank, its share of `chunks` and where to write its result; returns each rank's result (the JSON it wrote).
    The worker writes chunk k to parts/{k:05d}.jsonl; `progress(k)` is called as each lands."""
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob("rank_*.result.json"):  # from a crashed attempt: the barrier must not count them
        stale.unlink()
    gpus, cpus = visible_gpus(), sorted(os.sched_getaffinity(0))
    port = free_port()
    processes = []
    for rank, share in enumerate(assign_chunks(chunks, size)):
        request_file = parts / f"rank_{rank}.json"
        request_file.write_text(json.dumps(request | {"rank": rank, "size": size, "chunks": share,
                                                      "result": str(parts / f"rank_{rank}.result.json")}))
        env = os.environ | rank_environment(rank, size, tensor_parallel_size, port, gpus, cpus, moe)
        log = (parts / f"rank_{rank}.log").open("w")
        command = [sys.executable, "-m", worker_module, str(request_file)]
        processes.append((rank, subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        wait_for_ranks(processes, parts, chunks, progress)
    finally:
        for _, process, log in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    return [json.loads((parts / f"rank_{rank}.result.json").read_text()) for rank in range(size)]


def wait_for_other_ranks(result: Path, size: int) -> None:
    """In a MoE replica: vLLM's data-parallel ranks step together, so each stays up until every rank has
    written its result."""
    if "VLLM_DP_SIZE" in os.environ:
        while len(list(result.parent.glob("rank_*.result.json"))) < size:
            time.sleep(0.5)


def wait_for_ranks(processes: list, parts: Path, chunks: list[int], progress) -> None:
    """Wait for every rank; the first that fails stops the others and raises with the end of its log."""
    landed: set[int] = set()
    while True:
        for k in chunks:
            if k not in landed and (parts / f"{k:05d}.jsonl").exists():
                landed.add(k)
                if progress:
                    progress(k)
        codes = [(rank, process.poll()) for rank, process, _ in processes]
        failed = [(rank, code) for rank, code in codes if code not in (None, 0)]
        if failed:
            rank, code = failed[0]
            log = parts / f"rank_{rank}.log"
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
            raise RuntimeError(f"vLLM data-parallel rank {rank} failed (exit {code}; log {log}): {' | '.join(tail)}")
        if all(code == 0 for _, code in codes):
            return
        time.sleep(0.5)
