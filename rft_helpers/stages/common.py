"""What the stage modules share: the questions an iteration samples, an engine opened from a stage config, and the
process check of the generated tasks (measured, never used to train or filter)."""

from __future__ import annotations

import random

from ..config import OpenAIConfig, VLLMConfig
from ..data import load_split
from ..run import Run
from ..sampling import SamplingEngine, get_engine, resolve_engine
from ..steps import process_correct, split_steps


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


def reference_steps(run: Run, split: str) -> dict[str, list[str]] | None:
    """Generated tasks: each question's reference steps, its one correct process, by question id; None for a
    dataset task (a worked solution there is one of many right ones)."""
    if run.config.task.name == "dataset":
        return None
    return {q["id"]: split_steps(q["solution"], run.config.task.step_separator) for q in load_split(run.data_dir, split)}


def check_process(references: dict[str, list[str]] | None, row_id: str, text: str, separator: str) -> bool | None:
    """Whether every step of `text` is the reference's (None: no reference to check against)."""
    if references is None or row_id not in references:
        return None
    return process_correct(split_steps(text, separator), references[row_id])
