"""Sampling engines behind one interface; `get_engine(name, model_path, ...)` builds one from a model folder."""

from __future__ import annotations

import importlib

from .base import Completion, SamplingEngine, SamplingParams, check_counts, encode_chat

ENGINES = {
    "transformers": "rft_helpers.sampling.hf:TransformersEngine",
    "vllm": "rft_helpers.sampling.vllm_engine:VLLMEngine",
    "openai": "rft_helpers.sampling.openai_engine:OpenAIEngine",
}


def get_engine(name: str, model_path, **options) -> SamplingEngine:
    """The engine `name` serving the checkpoint at `model_path`; options go to its `from_path` (dtype,
    batch_size, seed, and the engine's own settings, e.g. vLLM's tensor_parallel_size); unknown ones are ignored."""
    if name not in ENGINES:
        raise ValueError(f"sample.engine: unknown engine {name!r}; choose one of {sorted(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls).from_path(model_path, **options)


__all__ = ["Completion", "SamplingEngine", "SamplingParams", "check_counts", "encode_chat", "get_engine", "ENGINES"]
