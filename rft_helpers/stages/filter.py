"""02_filter: score every sample with the reward, keep the good ones -> scored.jsonl, train.jsonl, pairs.jsonl.

The notebook calls these steps in order (`run_stage` calls them all):

1. `load_samples`: the iteration's samples.jsonl, checked against records.Sample.
2. `score`: each sample's reward (`reward`) and the final answer read from it.
3. `select`: the filters, in order; every dropped sample records the first reason that applies.
4. `write_outputs`: scored.jsonl, the training set (train.jsonl), the DPO pairs (pairs.jsonl) and the counts.
"""

from __future__ import annotations

from ..config import FilterConfig
from ..filters import apply_filters, build_pairs, build_train_set, filter_summary, score_samples
from ..io import write_jsonl
from ..records import Sample, read_records
from ..rewards import get_reward
from ..run import Run


def load_samples(run: Run, iteration: int) -> list[dict]:
    return read_records(run.iter_dir(iteration) / "samples.jsonl", Sample)


def score(config: FilterConfig, samples: list[dict]) -> list[dict]:
    return score_samples(samples, get_reward(config.reward), config.reward)


def select(config: FilterConfig, scored: list[dict]) -> list[dict]:
    return apply_filters(scored, config)


def write_outputs(run: Run, iteration: int, config: FilterConfig, scored: list[dict]) -> dict:
    """Write the three files and record the counts (metrics.json: filter); returns them."""
    folder = run.iter_dir(iteration)
    write_jsonl(folder / "scored.jsonl", scored)
    write_jsonl(folder / "train.jsonl", build_train_set(scored))
    pairs = build_pairs(scored, config.pairs_per_question)
    write_jsonl(folder / "pairs.jsonl", pairs)
    summary = filter_summary(scored, config.reward) | {"pairs": len(pairs)}
    run.update_metrics(iteration, "filter", summary, merge=False)
    run.finish_stage("filter", iteration)
    return summary


def run_stage(run: Run, iteration: int, config: FilterConfig) -> list[dict]:
    """The whole stage, step by step as the notebook runs it; returns the scored samples."""
    scored = select(config, score(config, load_samples(run, iteration)))
    write_outputs(run, iteration, config, scored)
    return scored
