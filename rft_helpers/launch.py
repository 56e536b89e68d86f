"""Training on several processes (GPUs) with `accelerate launch`: DDP, DeepSpeed ZeRO-3 or FSDP.

The train stage calls `launch_training` when `train.num_processes > 1`. It writes the training call (function name
and arguments) to a JSON file and runs `accelerate launch --config_file <accelerate_config> -m rft_helpers.launch
<request>`; every process makes the same call, the Trainer shards the work, and the main process writes the
checkpoint and the result. The config files live in params/accelerate/ (ddp, deepspeed_zero3, fsdp, cpu).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .exceptions import ConfigError
from .paths import ACCELERATE_DIR
from .train import TrainResult

FUNCTIONS = ("sft_train", "dpo_train", "grpo_train")


def accelerate_config_path(name_or_path: str) -> Path:
    """A config of params/accelerate/ by name (ddp, deepspeed_zero3, fsdp, cpu), or a path to your own."""
    path = Path(name_or_path) if name_or_path.endswith((".yaml", ".yml")) else ACCELERATE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in ACCELERATE_DIR.glob("*.yaml"))
        raise ConfigError(f"train.accelerate_config: no such file: {path} (names: {', '.join(known)}, or a path)")
    return path


def launch_command(request: Path, num_processes: int, accelerate_config: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(accelerate_config_path(accelerate_config)), "--num_processes", str(num_processes),
            "-m", "rft_helpers.launch", str(request)]


def launch_training(function: str, args: list, kwargs: dict, num_processes: int, accelerate_config: str,
                    log=print) -> TrainResult:
    """Run `rft_helpers.train.<function>(*args, **kwargs)` on `num_processes` processes; its output is streamed
    to `log` (a notebook cell) and the main process's TrainResult returned. Arguments must be JSON: give the
    reward by name and LoRA settings as a dict."""
    if function not in FUNCTIONS:
        raise ValueError(f"launch_training: {function!r} is not one of {FUNCTIONS}")
    with tempfile.TemporaryDirectory(prefix="rft-launch-") as folder:
        request, result = Path(folder) / "request.json", Path(folder) / "result.json"
        request.write_text(json.dumps({"function": function, "args": [str(a) if isinstance(a, Path) else a for a in args], "kwargs": kwargs,
                                       "result": str(result)}))
        command = launch_command(request, num_processes, accelerate_config)
        log(" ".join(command))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        for line in process.stdout:
            log(line.rstrip())
            tail = (tail + [line.rstrip()])[-5:]
        if process.wait() != 0 or not result.exists():
            raise RuntimeError(f"accelerate launch of {function} failed (exit {process.returncode}): "
                               f"{' | '.join(tail) or 'no output'}")
        return TrainResult(**json.loads(result.read_text()))


def _run(request_path: str) -> None:
    """In every launched process: make the training call; the main process writes the result."""
    from accelerate import PartialState

    from . import train
    from .config import LoraSettings
    from .rewards import get_reward

    request = json.loads(Path(request_path).read_text())
    kwargs = dict(request["kwargs"])
    if kwargs.get("lora") is not None:
        kwargs["lora"] = LoraSettings(**kwargs["lora"])
    if isinstance(kwargs.get("reward_fn"), str):
        kwargs["reward_fn"] = get_reward(kwargs["reward_fn"])
    result = getattr(train, request["function"])(*request["args"], **kwargs)
    if PartialState().is_main_process:
        Path(request["result"]).write_text(json.dumps(dataclasses.asdict(result)))


if __name__ == "__main__":
    _run(sys.argv[1])
