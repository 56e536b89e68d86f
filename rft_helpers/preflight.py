"""Checks before a run starts: every file the config names exists, the accelerate config is found and every
reward imports. `rft validate` and `rft run` call `check`, so a missing file or a broken reward module fails
in seconds, with one line naming the field, and not in a stage hours later."""

from __future__ import annotations

from pathlib import Path

from .config import DatasetSource, RunConfig
from .exceptions import ConfigError
from .gguf_models import resolve_folder
from .launch import accelerate_config_path
from .paths import is_local_path
from .rewards import get_reward
from .sampling.openai_engine import api_key
from .tracking import check_installed


def check(config: RunConfig, base_dir: Path | None = None) -> None:
    """Fail before any stage runs when a file the config names is missing or a reward cannot be loaded."""
    check_paths(config, base_dir)
    for iteration in config.iterations_with_settings():
        resolved = config.at_iteration(iteration)
        if resolved.train.num_processes > 1:
            accelerate_config_path(resolved.train.accelerate_config)
        get_reward(resolved.filter.reward, "filter.reward")
    get_reward(config.stage_config("eval", 0).reward, "eval.reward")
    check_installed(config.tracking.report_to)
    if any(config.at_iteration(i).sample.engine == "openai" for i in config.iterations_with_settings()[1:]):
        api_key(config.openai.base_url, config.openai.api_key_env)  # unset for a remote URL: now, not in iteration 1


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 itself (AVX-512 BF16 or AMX); elsewhere torch emulates it."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return True  # not Linux: nothing to read, so no advice
    flags = set(cpuinfo.read_text(errors="replace").split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def advice(config: RunConfig) -> list[str]:
    """Settings that work but are slow on this machine, each one line naming the field and the faster setting."""
    import torch

    if torch.cuda.is_available() or cpu_has_bf16():
        return []
    slow = [(name, fix) for name, fix, used in [
        ("model.dtype: bfloat16", "model.dtype=float32", config.model.dtype == "bfloat16"),
        ("train.bf16: true", "train.bf16=false",
         any(config.at_iteration(i).train.bf16 for i in config.iterations_with_settings())),
        ("prm.dtype: bfloat16", "prm.dtype=float32", config.prm.model is not None and config.prm.dtype == "bfloat16")]
        if used]
    if not slow:
        return []
    return [f"{' and '.join(name for name, _ in slow)} on a CPU without bf16 instructions (no avx512_bf16 or "
            "amx_bf16): torch emulates bf16, about 8x slower than float32 (measured on an AVX2 CPU); "
            f"{' '.join(f'--set {fix}' for _, fix in slow)} runs faster here"]


def check_paths(config: RunConfig, base_dir: Path | None = None) -> None:
    """The files and folders the config names exist (relative ones under `base_dir`, default the working folder)."""
    base = base_dir or Path.cwd()

    def missing(p: str | Path) -> bool:
        path = Path(p).expanduser()
        return not (path if path.is_absolute() else base / path).exists()

    if config.model.is_local and missing(config.model.name_or_path):
        raise ConfigError(f"model.name_or_path: no such folder: {config.model.name_or_path}")
    if config.model.gguf_file:
        gguf = resolve_folder(config.model.name_or_path) / config.model.gguf_file
        if missing(gguf):
            raise ConfigError(f"model.gguf_file: no such file: {gguf}")
    if config.task.system_prompt_file and missing(config.task.system_prompt_file):
        raise ConfigError(f"task.system_prompt_file: no such file: {config.task.system_prompt_file}")
    for field, source in dataset_sources(config).items():
        if is_local_path(source.path) and missing(source.path):
            raise ConfigError(f"{field}.path: no such file: {source.path}")
    prm = config.prm.model
    if prm and not config.prm.trained and is_local_path(prm) and missing(prm):
        raise ConfigError(f"prm.model: no such PRM folder: {prm}")
    second = config.eval.second_set
    if second and second.system_prompt_file and missing(second.system_prompt_file):
        raise ConfigError(f"eval.second_set.system_prompt_file: no such file: {second.system_prompt_file}")


def dataset_sources(config: RunConfig) -> dict[str, DatasetSource]:
    """Every dataset the config reads, by its parameter name."""
    sources = {"task.train": config.task.train, "task.test": config.task.test, "eval.second_set": config.eval.second_set}
    return {field: source for field, source in sources.items() if source is not None}


def absolutize_paths(config: RunConfig, base_dir: Path | None = None) -> RunConfig:
    """The config with its file fields made absolute, so notebooks executed in another folder find them."""
    base = base_dir or Path.cwd()

    def absolute(path: str) -> str:
        return str((base / Path(path).expanduser()).resolve())

    config = config.model_copy(deep=True)
    if config.model.is_local:
        config.model.name_or_path = absolute(config.model.name_or_path)
    if config.prm.model and config.prm.model.startswith((".", "/", "~")):
        config.prm.model = absolute(config.prm.model)
    if config.task.system_prompt_file:
        config.task.system_prompt_file = absolute(config.task.system_prompt_file)
    for source in dataset_sources(config).values():
        if is_local_path(source.path):
            source.path = absolute(source.path)
    second = config.eval.second_set
    if second and second.system_prompt_file:
        second.system_prompt_file = absolute(second.system_prompt_file)
    return config
