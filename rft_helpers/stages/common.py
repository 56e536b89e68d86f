"""What the stage modules share: the questions an iteration samples, an engine opened from a stage config, the
search a stage runs, and the process check of the generated tasks (measured, never used to train or filter)."""

from __future__ import annotations

import random

from ..config import EvalConfig, OpenAIConfig, PRMConfig, SampleConfig, VLLMConfig
from ..data import load_split
from ..prm import ProcessRewardModel, load_prm
from ..run import Run
from ..sampling import SamplingEngine, get_engine, resolve_engine
from ..search import SearchSettings, needs_prm
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


# ------------------------------------------------------------------------------------------------- search
def search_plan(run: Run, iteration: int, strategy: str, prm: PRMConfig, mcts_value: str = "prm",
                outcome_known: bool = True) -> tuple[str, str | None]:
    """The strategy a stage runs and the PRM it loads: with prm.model trained, a strategy that needs a PRM falls
    back to plain sampling (the sample stage) or greedy answers (evaluation) until one is trained."""
    if not needs_prm(strategy, mcts_value, outcome_known):  # plain sampling, greedy, majority, MCTS by rollouts
        return strategy, None
    path = run.prm_model(iteration)
    if path is None:
        return ("sample" if outcome_known else "greedy"), None
    return strategy, path


def open_prm(path: str | None, prm: PRMConfig) -> ProcessRewardModel | None:
    return None if path is None else load_prm(path, prm.format, prm.dtype, prm.score_batch_size)


def search_settings(section: SampleConfig | EvalConfig, run: Run, temperature: float, seed: int) -> SearchSettings:
    """A section's search settings (its n, temperature, top_p, lengths and `search` block) for one search."""
    return SearchSettings(n=section.n, temperature=temperature, top_p=section.top_p,
                          max_new_tokens=section.max_new_tokens, separator=run.config.task.step_separator,
                          seed=seed, **section.search.model_dump())
