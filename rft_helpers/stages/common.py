"""What the stage modules share: the questions an iteration samples, and an engine opened from a stage config."""

from __future__ import annotations

import random

from ..config import OpenAIConfig, VLLMConfig
from ..data import load_split
from ..run import Run
from ..sampling import SamplingEngine, get_engine, resolve_engine


def questions_for(run: Run, iteration: int, num_questions: int | None) -> list[dict]:
    """The training questions sampled in this iteration: all, or a fresh seeded subset each iteration."""
    rows = load_split(run.data_dir, "train")
    if num_questions is None or num_questions >= len(rows):
        return rows
    return random.Random(run.iteration_seed(iteration)).sample(rows, num_questions)


def engine_from_settings(name: str, model_path: str, *, dtype: str, batch_size: int, seed: int,
                vllm: VLLMConfig | None = None, openai: OpenAIConfig | None = None) -> SamplingEngine:
    """The engine `name` on `model_path`, given the options it takes: transformers the dtype and batch size,
    vllm its section with the dtype and seed, openai its section."""
    name = resolve_engine(name)
    options = {
        "transformers": lambda: {"dtype": dtype, "batch_size": batch_size},
        "vllm": lambda: (vllm or VLLMConfig()).model_dump() | {"dtype": dtype, "seed": seed},
        "openai": lambda: (openai or OpenAIConfig()).model_dump(),
    }
    return get_engine(name, model_path, **options.get(name, dict)())
