"""Sampling engines behind one interface; `get_engine(name, ...)` picks one by name."""

from __future__ import annotations

from .base import Completion, SamplingEngine, SamplingParams, check_counts

ENGINES = {"transformers": "rft_helpers.sampling.hf:TransformersEngine"}


def get_engine(name: str, model, tokenizer, batch_size: int = 64) -> SamplingEngine:
    if name not in ENGINES:
        raise ValueError(f"sample.engine: unknown engine {name!r}; choose one of {sorted(ENGINES)}")
    import importlib

    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)(model, tokenizer, batch_size=batch_size)


__all__ = ["Completion", "SamplingEngine", "SamplingParams", "check_counts", "get_engine", "ENGINES"]
