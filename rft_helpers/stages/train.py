"""04_train: iteration 0 warms the base model up on the seed set; each later iteration trains the policy on what
the filter kept (SFT), on right/wrong pairs (DPO) or on-policy (GRPO), and then the baseline, plain SFT on the seed
set, for the same number of optimizer steps.

The notebook calls these steps in order (`run_stage` calls them all):

1. `training_data`: what this iteration trains on, and the model it starts from.
2. `train_policy`: the training itself -> iter_NN/checkpoint (None when the filter kept nothing).
3. `train_baseline`: the baseline, as many steps -> iter_NN/baseline_checkpoint (with `baseline`).
4. `record`: the summary (steps, losses, rewards, the baseline's) in metrics.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import train as trainers
from ..config import TrainStageConfig
from ..data import build_prompt, load_split, seed_examples
from ..exceptions import ConfigError
from ..launch import launch_training
from ..records import Pair, TrainExample, read_records
from ..run import Run
from ..tracking import trainer_environment
from ..train import TrainResult, saved_steps
from .common import questions_for


@dataclass
class TrainingData:
    algorithm: str  # sft, dpo or grpo
    init: str  # the checkpoint training starts from
    records: list[dict]  # SFT examples, DPO pairs or GRPO prompts; empty: nothing to train on
    seed_set: list[dict]  # the seed set's reference solutions: the warm-up's and the baseline's data
    kept_examples: int = 0  # sft: the kept samples among the records (the rest: the seed set, with mix_seed)

    def summary(self) -> dict:
        return {"algorithm": self.algorithm, "init": self.init, "records": len(self.records),
                "kept_examples": self.kept_examples, "seed_examples": len(self.seed_set)}


# -------------------------------------------------------------------------------------------- 1. data
def training_data(run: Run, iteration: int, config: TrainStageConfig) -> TrainingData:
    seed_set = seed_examples(load_split(run.data_dir, "seed"), run.system_prompt)
    if iteration == 0:  # the warm-up: the model every algorithm and method starts from
        return TrainingData("sft", run.base_model, seed_set, seed_set)
    init = run.start_model() if config.init == "base" else run.policy_model(iteration)
    folder = run.iter_dir(iteration)
    if config.algorithm == "grpo":
        return TrainingData("grpo", init, grpo_questions(run, iteration, config), seed_set)
    if config.algorithm == "dpo":
        return TrainingData("dpo", init, read_records(folder / "pairs.jsonl", Pair), seed_set)
    kept = read_records(folder / "train.jsonl", TrainExample)
    mixed = seed_set if config.mix_seed and kept else []
    return TrainingData("sft", init, kept + mixed, seed_set, kept_examples=len(kept))


def grpo_questions(run: Run, iteration: int, config: TrainStageConfig) -> list[dict]:
    """GRPO's training prompts: this iteration's questions (as the sample stage would draw them) and answers."""
    return [{"prompt": build_prompt(q["question"], run.system_prompt), "answer": q["answer"]}
            for q in questions_for(run, iteration, config.sample.num_questions)]


# ------------------------------------------------------------------------------------------ 2. policy
def train_policy(run: Run, iteration: int, config: TrainStageConfig, data: TrainingData) -> TrainResult | None:
    """Train from `data.init` into this iteration's checkpoint; None (the model stays as it is, and the next
    stages use the newest checkpoint) when there is nothing to train on."""
    if not data.records:
        return None
    with trainer_environment(run, config.tracking, iteration, "warmup" if iteration == 0 else "policy"):
        return _train(run, iteration, config, data)


def _train(run: Run, iteration: int, config: TrainStageConfig, data: TrainingData) -> TrainResult:
    output, options = run.checkpoint(iteration), training_options(run, iteration, config)
    if data.algorithm == "grpo":  # on-policy: it samples as it trains, with the sample section's settings
        prm = run.prm_model(iteration) if config.prm_weight else None
        if config.prm_weight and prm is None:
            raise ConfigError(f"train.prm_weight: iteration {iteration} has no PRM yet to reward GRPO with")
        return call(config, "grpo_train", data.init, data.records, output, reward_fn=config.filter.reward,
                    num_generations=config.sample.n, max_completion_length=config.sample.max_new_tokens,
                    temperature=config.sample.temperature, top_p=config.sample.top_p, top_k=config.sample.top_k,
                    min_p=config.sample.min_p, beta=config.beta,
                    prm={"path": prm, "aggregation": config.filter.prm_aggregation, "format": config.prm_model.format,
                         "dtype": config.prm_model.dtype,
                         "separator": run.config.task.step_separator} if prm else None,
                    prm_weight=config.prm_weight, **options)
    if data.algorithm == "dpo":
        return call(config, "dpo_train", data.init, data.records, output, beta=config.beta,
                    sft_weight=config.dpo_sft_weight, **options)
    return call(config, "sft_train", data.init, data.records, output, batching=config.batching, **options)


def training_options(run: Run, iteration: int, config: TrainStageConfig, max_steps: int | None = None) -> dict:
    """The arguments every training call shares (see `train.train`)."""
    return dict(learning_rate=config.learning_rate, batch_size=config.batch_size, seed=run.config.seed + iteration,
                bf16=config.bf16, gradient_checkpointing=config.gradient_checkpointing,
                lora=config.lora if config.method == "lora" else None, num_epochs=config.num_epochs,
                max_steps=max_steps or config.max_steps, resume=config.init == "resume",
                save_state=config.init == "resume", lr_scheduler=config.lr_scheduler,
                warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
                max_grad_norm=config.max_grad_norm, gradient_accumulation_steps=config.gradient_accumulation_steps,
                user_trainer_args=config.trainer_args, report_to=config.tracking.report_to,
                save_every_steps=config.save_every_steps,
                progress_label="warm-up" if iteration == 0 else f"train iteration {iteration}")


def call(config: TrainStageConfig, function: str, *args, **kwargs) -> TrainResult:
    """rft_helpers.train.<function>(...): here, or on `num_processes` processes through accelerate."""
    if config.num_processes == 1:
        return getattr(trainers, function)(*args, **kwargs)
    lora = kwargs.get("lora")
    return launch_training(function, list(args), kwargs | {"lora": lora.model_dump() if lora else None},
                           config.num_processes, config.accelerate_config)


# ---------------------------------------------------------------------------------------- 3. baseline
def train_baseline(run: Run, iteration: int, config: TrainStageConfig, data: TrainingData,
                   result: TrainResult | None) -> TrainResult | None:
    """Plain SFT on the seed set for as many optimizer steps as the policy took, continuing the baseline's own
    last checkpoint: what RFT gains over it is the value of the self-generated data, not of more training."""
    if not config.baseline or result is None:
        return None
    options = training_options(run, iteration, config, max_steps=result.steps) | {"progress_label": "baseline"}
    with trainer_environment(run, config.tracking, iteration, "baseline"):
        return call(config, "sft_train", run.baseline_model(iteration), data.seed_set,
                    run.baseline_checkpoint(iteration), batching=config.batching, **options)


# ------------------------------------------------------------------------------------------ 4. record
def record(run: Run, iteration: int, config: TrainStageConfig, data: TrainingData, result: TrainResult | None,
           baseline: TrainResult | None) -> dict:
    """The stage's summary, in metrics.json (train)."""
    if result is None:
        summary = {"mode": "skipped", "reason": f"no {config.algorithm} data", "steps": 0}
    else:
        summary = {"mode": "warmup" if iteration == 0 else data.algorithm, "method": config.method, "init": data.init}
        if data.algorithm == "grpo":
            # completions GRPO generated: a batch per accumulation step
            summary["samples_drawn"] = result.steps * config.batch_size * config.gradient_accumulation_steps
        elif data.algorithm == "sft" and iteration > 0:
            summary |= {"kept_examples": data.kept_examples, "seed_examples": len(data.records) - data.kept_examples}
        summary |= {**result.summary, "resumed_at_step": saved_steps(data.init) if config.init == "resume" else None,
                    "loss_history": result.loss_history, "reward_history": result.reward_history,
                    "learning_rates": result.learning_rates, "lr_scheduler": config.lr_scheduler,
                    # what one optimizer step sees: a batch per process, accumulated
                    "sequences_per_step": config.batch_size * config.gradient_accumulation_steps
                    * config.num_processes}
        if baseline is not None:
            summary["baseline"] = baseline.summary | {"loss_history": baseline.loss_history}
    run.update_metrics(iteration, "train", summary, merge=False)
    run.finish_stage("train", iteration)
    return summary


def run_stage(run: Run, iteration: int, config: TrainStageConfig) -> dict:
    """The whole stage, step by step as the notebook runs it."""
    data = training_data(run, iteration, config)
    result = train_policy(run, iteration, config, data)
    baseline = train_baseline(run, iteration, config, data, result)
    return record(run, iteration, config, data, result, baseline)
