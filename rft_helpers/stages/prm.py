"""02_prm: a process reward model trained from the policy's own rollouts (Math-Shepherd) -> prm_labels.jsonl, prm/.

The notebook calls these steps in order (`run_stage` calls them all):

1. `choose_samples`: a seeded subset of this iteration's samples, its questions split into training and held-out.
2. `open_engine`: the policy, which writes the rollouts (the sample section's engine and batch size).
3. `label_steps`: from every distinct step prefix, `rollouts` continuations; a step's label is the share of the
   trajectories through it (those rollouts, and the iteration's samples drawn the same way) that reach the right
   answer (prm.labels), and each step's training target (`targets`: that label, or its mean over identical steps
   with prm.pool_identical_steps). Generated tasks also get each step's truth (the process check), to measure only.
4. `train`: a two-label token classifier on the backbone (the run's base model by default) -> iter_NN/prm/.
5. `evaluate`: the PRM on the held-out samples: step-level ROC against the rollout labels and, where the truth
   is known, `step_auroc` against it; `label_agreement` of the rollout labels with the truth; all in metrics.json.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..config import PRMStageConfig
from ..evaluate import auroc, roc_curve
from ..io import read_jsonl, write_jsonl
from ..prm import load_prm
from ..prm.labels import monte_carlo_labels, pooled_targets, step_targets
from ..prm.training import PRMTrainResult, train_prm
from ..records import Sample, read_records
from ..rewards import get_reward
from ..run import Run
from ..sampling import SamplingEngine, SamplingParams
from ..steps import step_truth
from .common import engine_from_settings, reference_steps


@dataclass
class LabelSet:
    train: list[dict]  # samples whose labels train the PRM
    heldout: list[dict]  # samples of other questions, to measure it

    def summary(self) -> dict:
        return {"train_samples": len(self.train), "heldout_samples": len(self.heldout),
                "questions": len({s["id"] for s in self.train + self.heldout})}


# ------------------------------------------------------------------------------------------------ 1. samples
def choose_samples(run: Run, iteration: int, config: PRMStageConfig) -> LabelSet:
    """`samples` samples drawn with the iteration's seed; whole questions are held out, so the PRM is measured
    on questions it never saw."""
    samples = read_records(run.iter_dir(iteration) / "samples.jsonl", Sample)
    rng = random.Random(run.iteration_seed(iteration) + 17)
    chosen = rng.sample(samples, min(config.samples, len(samples)))
    questions = sorted({s["id"] for s in chosen})
    heldout = set(rng.sample(questions, round(config.heldout * len(questions))))
    return LabelSet(train=[s for s in chosen if s["id"] not in heldout],
                    heldout=[s for s in chosen if s["id"] in heldout])


# ------------------------------------------------------------------------------------------------- 2. engine
def open_engine(run: Run, iteration: int, config: PRMStageConfig) -> SamplingEngine | None:
    """The policy's engine for the rollouts (None with labels_from search: the tree's values need none)."""
    if config.labels_from == "search":
        return None
    return engine_from_settings(config.sample.engine, run.policy_model(iteration), dtype=run.config.model.dtype,
                                batch_size=config.sample.batch_size, seed=run.iteration_seed(iteration),
                                vllm=config.vllm, openai=config.openai)


# -------------------------------------------------------------------------------------------------- 3. label
def label_steps(run: Run, iteration: int, config: PRMStageConfig, chosen: LabelSet, engine: SamplingEngine,
                progress: bool = True) -> list[dict]:
    """Monte Carlo labels for every chosen sample -> prm_labels.jsonl (records.StepLabels); closes the engine.
    The rollouts' tokens and seconds go to metrics.json (prm.rollouts)."""
    samples = chosen.train + chosen.heldout
    if config.labels_from == "search":
        rows, numbers = search_labels(run, iteration, samples, hard=config.labels == "hard")
    else:
        params = SamplingParams(n=config.rollouts, temperature=config.temperature, top_p=config.sample.top_p,
                                top_k=config.sample.top_k, min_p=config.sample.min_p,
                                max_new_tokens=config.sample.max_new_tokens, seed=run.iteration_seed(iteration) + 31)
        pool = [s for s in read_records(run.iter_dir(iteration) / "samples.jsonl", Sample) if drawn_as(s, params)]
        rows, numbers = monte_carlo_labels(engine, samples, get_reward(config.filter.reward), config.filter.reward,
                                           params, run.config.task.step_separator, kind=config.labels,
                                           pool=pool if config.reuse_samples else [], progress=progress)
        engine.close()
    heldout = {s["id"] for s in chosen.heldout}  # whole questions are held out
    references = reference_steps(run, "train")
    for row in rows:
        row["heldout"] = row["id"] in heldout
        row["truth"] = step_truth(row["completions"], references[row["id"]]) if references else None
    if config.pool_identical_steps:  # pooled over the training rows only: held-out ones stay out of what is learnt
        targets = pooled_targets(rows, config.labels, pool=[r for r in rows if not r["heldout"]])
    else:
        targets = [step_targets(row, config.labels) for row in rows]
    for row, row_targets in zip(rows, targets):
        row["targets"] = row_targets
    write_jsonl(run.iter_dir(iteration) / "prm_labels.jsonl", rows)
    run.update_metrics(iteration, "prm", {"rollouts": numbers}, merge=False)
    return rows


def drawn_as(sample: dict, params: SamplingParams) -> bool:
    """Whether a sample is a plain draw of the policy with the rollouts' settings: then its steps are trajectories
    of the same distribution (a search's solutions are not)."""
    drawn = sample["sampling"]
    return (drawn.get("strategy", "sample") == "sample"
            and all(drawn.get(key) == getattr(params, key) for key in ("temperature", "top_p", "top_k", "min_p")))


def search_labels(run: Run, iteration: int, samples: list[dict], hard: bool) -> tuple[list[dict], dict]:
    """Step labels from what MCTS backed up in 01_sample (search_trees.jsonl): each finished path of a chosen
    sample's question, its steps labelled by their nodes' mean values (ReST-MCTS*'s inferred values), without
    separate rollouts."""
    trees = {t["id"]: t for t in read_jsonl(run.iter_dir(iteration) / "search_trees.jsonl")}
    prompts = {s["id"]: s["prompt"] for s in samples}
    rows = [{"id": qid, "sample_index": k, "prompt": prompt, "completions": path["steps"],
             "labels": [v > 0 if hard else v >= 0.5 for v in path["step_values"]], "success": path["step_values"]}
            for qid, prompt in prompts.items() if qid in trees
            for k, path in enumerate(trees[qid]["paths"]) if path["steps"]]
    return rows, {"samples": len(rows), "steps": sum(len(r["completions"]) for r in rows), "source": "search",
                  "rollouts": 0, "rollout_tokens": 0}


# -------------------------------------------------------------------------------------------------- 4. train
def train(run: Run, iteration: int, config: PRMStageConfig, rows: list[dict]) -> PRMTrainResult:
    """The PRM on the training samples' labels, from the backbone -> iter_NN/prm/."""
    backbone = {"base": run.base_model, "policy": run.policy_model(iteration)}.get(config.backbone, config.backbone)
    result = train_prm(backbone, [r for r in rows if not r["heldout"]], run.prm_checkpoint(iteration),
                       separator=run.config.task.step_separator, labels=config.labels,
                       last_step_weight=config.last_step_weight, learning_rate=config.learning_rate, num_epochs=config.num_epochs, batch_size=config.batch_size,
                       seed=run.config.seed + iteration)
    run.update_metrics(iteration, "prm", {"backbone": backbone, "training": result.summary})
    return result


# ----------------------------------------------------------------------------------------------- 5. evaluate
@dataclass
class PRMEvaluation:
    metrics: dict  # what metrics.json's prm section gets
    roc: dict  # name -> (false positive rates, true positive rates), for the plot
    heldout: list[dict]  # the held-out rows with the PRM's step scores


def evaluate(run: Run, iteration: int, config: PRMStageConfig, rows: list[dict], progress: bool = True) -> PRMEvaluation:
    """The new PRM's step scores on the held-out samples against their rollout labels and (generated tasks) the
    truth, and how often the rollout labels agree with the truth."""
    heldout = [r for r in rows if r["heldout"]]
    prm = load_prm(run.prm_checkpoint(iteration), dtype=config.dtype, batch_size=config.score_batch_size)
    scores = prm.score([r["prompt"] for r in heldout], [r["completions"] for r in heldout], progress=progress)
    heldout = [r | {"step_scores": s} for r, s in zip(heldout, scores)]
    flat = [score for r in heldout for score in r["step_scores"]]
    targets = {"rollout_labels": [label for r in heldout for label in r["labels"]]}
    if all(r["truth"] is not None for r in rows):
        targets["truth"] = [truth for r in heldout for truth in r["truth"]]
    metrics = {"heldout_steps": len(flat), "step_auroc_vs_rollout_labels": auroc(flat, targets["rollout_labels"]),
               "step_auroc": auroc(flat, targets["truth"]) if "truth" in targets else None,
               "label_agreement": label_agreement(rows), "model": str(run.prm_checkpoint(iteration))}
    run.update_metrics(iteration, "prm", metrics)
    run.finish_stage("prm", iteration)
    return PRMEvaluation(metrics, {name: roc_curve(flat, labels) for name, labels in targets.items()}, heldout)


def label_agreement(rows: list[dict]) -> float | None:
    """The share of labelled steps whose rollout label is the truth (the Qwen PRM paper: Monte Carlo labels are
    noisy: a wrong step can still reach the right answer, a right one fail); None without the truth."""
    pairs = [(label, truth) for r in rows if r["truth"] is not None for label, truth in zip(r["labels"], r["truth"])]
    return sum(label == truth for label, truth in pairs) / len(pairs) if pairs else None


def run_stage(run: Run, iteration: int, config: PRMStageConfig, progress: bool = True) -> PRMEvaluation:
    """The whole stage, step by step as the notebook runs it."""
    chosen = choose_samples(run, iteration, config)
    rows = label_steps(run, iteration, config, chosen, open_engine(run, iteration, config), progress)
    train(run, iteration, config, rows)
    return evaluate(run, iteration, config, rows, progress)
