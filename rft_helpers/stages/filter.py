"""03_filter: score every sample with the reward (and the PRM), keep the good ones -> scored.jsonl, train.jsonl,
pairs.jsonl.

The notebook calls these steps in order (`run_stage` calls them all):

1. `load_samples`: the iteration's samples.jsonl, checked against records.Sample.
2. `score`: each sample's reward (`reward`) and the final answer read from it; with `prm`, each step's score from
   the run's PRM; for the generated tasks, whether every step is right (the process check: measured only).
3. `select`: the filters, in order; every dropped sample records the first reason that applies.
4. `write_outputs`: scored.jsonl, the training set (train.jsonl), the DPO pairs (pairs.jsonl) and the counts,
   with, for the generated tasks, the share of kept samples whose every step is right.
"""

from __future__ import annotations

from ..config import FilterStageConfig
from ..exceptions import ConfigError
from ..filters import (add_step_scores, apply_filters, build_pairs, build_train_set, filter_summary, process_summary,
                       score_samples)
from ..io import read_jsonl, write_jsonl
from ..records import Sample, assistant, completion_text, pair_record, read_records
from ..rewards import get_reward
from ..run import Run
from ..steps import split_steps
from .common import check_process, open_prm, reference_steps


def load_samples(run: Run, iteration: int) -> list[dict]:
    return read_records(run.iter_dir(iteration) / "samples.jsonl", Sample)


def score(run: Run, iteration: int, config: FilterStageConfig, samples: list[dict], progress: bool = True) -> list[dict]:
    scored = score_samples(samples, get_reward(config.reward), config.reward)
    separator = run.config.task.step_separator
    if config.prm:
        path = run.prm_model(iteration)
        if path is None:
            raise ConfigError(f"filter.prm: iteration {iteration} has no PRM yet (prm.model: trained learns one in "
                              "02_prm of iteration 1)")
        prm = open_prm(path, config.prm_model)  # its format, dtype and batch size
        steps = [split_steps(completion_text(row["completion"]), separator) for row in scored]
        scored = add_step_scores(scored, prm.score([row["prompt"] for row in scored], steps, progress=progress),
                                 config.prm_aggregation)
    references = reference_steps(run, "train")
    return [row | {"process_correct": check_process(references, row["id"], completion_text(row["completion"]),
                                                    separator)} for row in scored]


def select(config: FilterStageConfig, scored: list[dict]) -> list[dict]:
    return apply_filters(scored, config)


def write_outputs(run: Run, iteration: int, config: FilterStageConfig, scored: list[dict]) -> dict:
    """Write the three files and record the counts (metrics.json: filter); returns them."""
    folder = run.iter_dir(iteration)
    write_jsonl(folder / "scored.jsonl", scored)
    write_jsonl(folder / "train.jsonl", build_train_set(scored))
    pairs = build_pairs(scored, config.pairs_per_question, config.reward if config.prm else None)
    step_pairs = search_step_pairs(run, iteration, scored) if config.step_pairs else []
    pairs += step_pairs
    write_jsonl(folder / "pairs.jsonl", pairs)
    outcome_only = apply_filters(scored, config.model_copy(update={"prm": False})) if config.prm else None
    summary = filter_summary(scored, config.reward) | {"pairs": len(pairs)} | process_summary(scored, outcome_only)
    if config.step_pairs:
        summary["step_pairs"] = len(step_pairs)
    if config.prm:
        summary["prm_threshold"], summary["prm_model"] = config.prm_threshold, run.prm_model(iteration)
    run.update_metrics(iteration, "filter", summary, merge=False)
    run.finish_stage("filter", iteration)
    return summary


def search_step_pairs(run: Run, iteration: int, scored: list[dict]) -> list[dict]:
    """MCTS's step-level preferences (search_trees.jsonl) as DPO pairs: the question, then the shared prefix with
    the better step against the prefix with the worse one (rStar-Math's per-step pairs)."""
    path = run.iter_dir(iteration) / "search_trees.jsonl"
    prompts = {row["id"]: row["prompt"] for row in scored}
    trees = read_jsonl(path) if path.exists() else []
    return [pair_record(tree["id"], prompts[tree["id"]], assistant(pair["prefix"] + pair["chosen"]),
                        assistant(pair["prefix"] + pair["rejected"]))
            for tree in trees if tree["id"] in prompts for pair in tree["pairs"]]


def run_stage(run: Run, iteration: int, config: FilterStageConfig, progress: bool = True) -> list[dict]:
    """The whole stage, step by step as the notebook runs it; returns the scored samples."""
    scored = select(config, score(run, iteration, config, load_samples(run, iteration), progress))
    write_outputs(run, iteration, config, scored)
    return scored
