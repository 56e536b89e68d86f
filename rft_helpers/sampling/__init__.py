"""Sampling engines behind one interface; `get_engine(name, model_path, **options)` builds one from a model folder."""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from ..config import format_validation_error
from ..exceptions import ConfigError
from .base import Completion, SamplingEngine, SamplingParams, check_counts, encode_chat

ENGINES = {
    "transformers": "rft_helpers.sampling.hf:TransformersEngine",
    "vllm": "rft_helpers.sampling.vllm_engine:VLLMEngine",
    "openai": "rft_helpers.sampling.openai_engine:OpenAIEngine",
}


def resolve_engine(name: str) -> str:
    """`auto` is vllm where it is installed and a GPU is present, else transformers; other names are themselves."""
    if name != "auto":
        return name
    import torch

    from .vllm_engine import vllm_available

    return "vllm" if vllm_available() and torch.cuda.is_available() else "transformers"


def engine_class(name: str) -> type[SamplingEngine]:
    name = resolve_engine(name)
    if name not in ENGINES:
        raise ConfigError(f"sample.engine: unknown engine {name!r}; choose one of {sorted(ENGINES)} or auto")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_engine(name: str, model_path, **options) -> SamplingEngine:
    """The engine `name` (or `auto`) serving the checkpoint at `model_path`. `options` are the engine's `Options`
    (transformers: dtype, batch_size; vllm: the vllm section, dtype, seed; openai: the openai section); an
    unknown or invalid one is a ConfigError naming it."""
    cls = engine_class(name)
    try:
        validated = cls.Options.model_validate(options)
    except ValidationError as e:
        unknown = [".".join(map(str, err["loc"])) for err in e.errors() if err["type"] == "extra_forbidden"]
        if unknown:
            raise ConfigError(f"engine {cls.name}: unknown option {unknown[0]!r}; its options are "
                              f"{', '.join(sorted(cls.Options.model_fields))}") from None
        raise ConfigError(format_validation_error(f"engine {cls.name}", e)) from None
    return cls.from_options(model_path, validated)


__all__ = ["Completion", "SamplingEngine", "SamplingParams", "check_counts", "encode_chat", "engine_class",
           "get_engine", "resolve_engine", "ENGINES"]
