"""Sampling engines behind one interface; `get_engine(name, model_path, ...)` builds one from a model folder."""

from __future__ import annotations

import importlib

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


def get_engine(name: str, model_path, **options) -> SamplingEngine:
    """The engine `name` (or `auto`) serving the checkpoint at `model_path`; options go to its `from_path` (dtype,
    batch_size, seed, and the engine's own settings, e.g. vLLM's tensor_parallel_size); unknown ones are ignored."""
    name = resolve_engine(name)
    if name not in ENGINES:
        raise ValueError(f"sample.engine: unknown engine {name!r}; choose one of {sorted(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls).from_path(model_path, **options)


__all__ = ["Completion", "SamplingEngine", "SamplingParams", "check_counts", "encode_chat", "get_engine",
           "resolve_engine", "ENGINES"]
