"""04_train: TRL's trainers on the records the other stages write (conversational messages).

- SFT (`sft_train`) on prompt/completion records: rejection-sampling fine-tuning on the kept samples. The loss
  covers the completion only (TRL's default for prompt/completion data): the model learns to answer.
- DPO (`dpo_train`) on prompt/chosen/rejected pairs built from one question's right and wrong samples.
- GRPO (`grpo_train`): on-policy; it samples as it trains and scores with the filter stage's reward.

Each one trains every weight or LoRA adapters, can save and resume the optimizer state, and writes the checkpoint
to a temporary folder renamed into place.

On a CPU the SFT loss is the model's own cross-entropy on the same labels (`model_loss_sft_trainer`). TRL's tiled
LM head, which also computes entropy and token-accuracy metrics, made each step 1.27x slower on SmolLM2-135M
(batch 4, bf16 autocast). On a GPU TRL's head stays: it never holds the full (batch, length, vocabulary) logits in
memory.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .config import LoraSettings
from .io import scratch_folder
from .models import adapter_base, is_adapter, load_model, load_tokenizer, save_checkpoint
from .progress import quiet_trainer_progress

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    steps: int
    examples: int
    seconds: float
    loss_history: list[float] = field(default_factory=list)
    reward_history: list[float] = field(default_factory=list)  # GRPO: mean reward of each step's samples
    learning_rates: list[float] = field(default_factory=list)  # the rate at each logged step
    epochs: float | None = None  # passes over the records, as the trainer counts them
    resumed_from_step: int | None = None  # a killed call's last save that this one continued from

    @property
    def summary(self) -> dict:
        losses = self.loss_history
        return {
            "steps": self.steps, "examples": self.examples, "seconds": round(self.seconds, 2),
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            **({"resumed_from_step": self.resumed_from_step} if self.resumed_from_step else {}),
        }


# How SFT batches examples of different lengths (the `batching` option):
BATCHING = {
    "padded": {},  # random batches padded to their longest example (the Trainer's default)
    # A batch is one row of concatenated examples (TRL's padding-free; no truncation: kept samples are short).
    # The examples stay apart: FlashAttention reads their bounds from the position ids; with sdpa or eager,
    # transformers builds a block-diagonal mask from them (a training forward passes no attention mask and no
    # cache). That mask spans the whole row, so without FlashAttention attention costs more than padded batches.
    "padding_free": {"padding_free": True, "max_length": None},
    "length_grouped": {"train_sampling_strategy": "group_by_length"},  # batches of similar lengths, little padding
}


def sft_train(model_path: str | Path, examples: list[dict], output_dir: str | Path, *, batching: str = "padded",
              **options) -> TrainResult:
    """Supervised fine-tuning on prompt/completion records, loss on the completion only. `batching`: a key of
    BATCHING. Options: see `train`."""
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise ValueError("no training examples: every sample was filtered out (see scored.jsonl reject_reason)")
    if batching not in BATCHING:
        raise ValueError(f"train.batching: unknown {batching!r}; choose one of {sorted(BATCHING)}")
    attention = None
    if batching == "padding_free" and torch.cuda.is_available():
        import importlib.util

        attention = "flash_attention_2" if importlib.util.find_spec("flash_attn") else None
    records = [{"prompt": e["prompt"], "completion": e["completion"]} for e in examples]
    trainer_class = SFTTrainer if torch.cuda.is_available() else model_loss_sft_trainer()
    return train(model_path, records, output_dir, SFTConfig, trainer_class, BATCHING[batching],
                 attn_implementation=attention, **options)


def dpo_train(model_path: str | Path, pairs: list[dict], output_dir: str | Path, *, beta: float = 0.1,
              sft_weight: float = 0.0, **options) -> TrainResult:
    """DPO (TRL's DPOTrainer) on prompt/chosen/rejected records; the reference model is the starting model
    (with LoRA: the same weights with the adapter switched off). `sft_weight` > 0 adds that much of the SFT loss
    on the chosen completions (RPO, Pang et al. 2024): DPO alone can lower the likelihood of the correct answers
    as long as the wrong ones fall faster. Options: see `train`."""
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise ValueError("no preference pairs: no question had both a kept and a wrong sample (see pairs.jsonl)")
    records = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, sft_weight]} if sft_weight else {}
    return train(model_path, records, output_dir, DPOConfig, DPOTrainer, {"beta": beta} | losses, **options)


def grpo_train(model_path: str | Path, questions: list[dict], output_dir: str | Path, *, reward_fn,
               num_generations: int, max_completion_length: int, temperature: float, top_p: float = 1.0,
               top_k: int = 0, min_p: float = 0.0,
               beta: float = 0.0, prm: dict | None = None, prm_weight: float = 0.0, **options) -> TrainResult:
    """On-policy GRPO (TRL's GRPOTrainer): each step samples `num_generations` completions per question, scores
    them with `reward_fn` (the filter stage's reward, or its name: same signature) and pushes up the ones better
    than their group's mean. With `prm` (PRMReward's arguments: path, aggregation, separator, format, dtype) and
    `prm_weight` > 0, the PRM's aggregated step score is a second reward, weighted beside the outcome's 1 (TRL's
    reward_weights). `batch_size` counts completions, so it must be a multiple of num_generations.
    Options: see `train`."""
    from trl import GRPOConfig, GRPOTrainer

    from .prm.reward import PRMReward
    from .rewards import get_reward

    rewards = [get_reward(reward_fn) if isinstance(reward_fn, str) else reward_fn]
    if prm and prm_weight:
        rewards.append(PRMReward(**prm))
    if options.get("batch_size", 0) % num_generations:
        raise ValueError(f"train.batch_size: {options.get('batch_size')} completions per step is not a multiple of "
                         f"sample.n={num_generations} (GRPO compares the n samples of a question within a step)")
    records = [{"prompt": q["prompt"], "answer": q["answer"]} for q in questions]
    grpo_args = {"num_generations": num_generations, "max_completion_length": max_completion_length,
                 "temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p or None, "beta": beta,
                 "reward_weights": [1.0, prm_weight][: len(rewards)]}
    trainer_class = functools.partial(GRPOTrainer, reward_funcs=rewards)
    return train(model_path, records, output_dir, GRPOConfig, trainer_class, grpo_args,
                 completions_per_record=num_generations, **options)


def train(
    model_path: str | Path,
    records: list[dict],
    output_dir: str | Path,
    config_class,
    trainer_class,
    trainer_args: dict | None = None,
    completions_per_record: int = 1,
    attn_implementation: str | None = None,
    *,
    learning_rate: float,
    batch_size: int,
    num_epochs: float = 1.0,
    max_steps: int | None = None,
    seed: int = 0,
    bf16: bool = False,
    gradient_checkpointing: bool = False,
    lora: LoraSettings | None = None,
    resume: bool = False,
    save_state: bool = False,
    lr_scheduler: str = "linear",
    warmup_ratio: float = 0.05,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    gradient_accumulation_steps: int = 1,
    user_trainer_args: dict | None = None,
    report_to: list[str] | None = None,
    progress_label: str = "train",
    save_every_steps: int | None = None,
) -> TrainResult:
    """Train the model at `model_path` with a TRL trainer on `records` and save model + tokenizer to `output_dir`;
    with `lora`, train adapters only (see `trainable_model`).

    `save_state` also saves the optimizer, scheduler, RNG and step count in `output_dir`. `resume` continues
    from the state saved with `model_path` (when there is one): the same Adam moments and step count, with the
    learning-rate schedule stretched over the steps done and this call's. Steps and losses reported are this call's.
    `user_trainer_args` are the recipe's own fields of the trainer's config (train.trainer_args, checked by
    `rft validate`); they come last. `save_every_steps` saves the trainer's state (weights, optimizer, scheduler,
    RNG, step) every that many steps beside `output_dir` (`.<name>.resume/`); a call that finds such a save (the
    process was killed) resumes from it, replaying the same batches, and ends with the weights an uninterrupted call
    would have. Not with `resume`, which continues from `model_path`'s saved state instead. `report_to` names the trackers the trainer logs its steps to (the caller
    points them at the run's tracker run: tracking.trainer_environment)."""
    from datasets import Dataset

    tokenizer = load_tokenizer(model_path)
    model, peft_config = trainable_model(model_path, lora, attn_implementation)
    previous_steps = saved_steps(model_path) if resume else None
    saves = Path(output_dir).parent / f".{Path(output_dir).name}.resume" if save_every_steps and not resume else None
    resume_from = last_save(saves) if saves else None
    # the trainer's own folder (logs, and the periodic saves when asked for); the model goes to output_dir
    with scratch_folder(output_dir, f"trainer-scratch-{os.environ.get('RANK', '0')}") as scratch:  # one per process
        args = config_class(
            output_dir=str(saves or scratch),
            learning_rate=learning_rate,
            lr_scheduler_type=lr_scheduler,
            warmup_steps=warmup_ratio,  # below 1: a fraction of the steps
            weight_decay=weight_decay,
            max_grad_norm=max_grad_norm,
            gradient_accumulation_steps=gradient_accumulation_steps,
            per_device_train_batch_size=batch_size,
            num_train_epochs=num_epochs,
            max_steps=max_steps or -1,
            logging_steps=1,
            optim="adamw_torch_fused",
            gradient_checkpointing=gradient_checkpointing,  # TRL turns it on by default
            **({"save_strategy": "steps", "save_steps": save_every_steps, "save_total_limit": 1} if saves
               else {"save_strategy": "no"}),
            report_to=report_to or "none",
            seed=seed,
            bf16=bf16,  # autocast only; False by default since TRL refuses to start on CPU with its bf16 default
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            ignore_data_skip=resume_from is None,  # init resume: new data, start at its first batch
            **(({"max_length": getattr(model.config, "max_position_embeddings", None)}
                if "max_length" in config_class.__dataclass_fields__ else {}) | (trainer_args or {})
               | (user_trainer_args or {})),
        )
        if previous_steps is not None:  # this call's steps come on top of the saved ones
            per_step = batch_size * args.world_size * gradient_accumulation_steps  # sequences per optimizer step
            args.max_steps = previous_steps + (max_steps or math.ceil(num_epochs * math.ceil(
                len(records) * completions_per_record / per_step)))
        trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(records),
                                processing_class=tokenizer, peft_config=peft_config)
        quiet_trainer_progress(trainer, progress_label)  # one bar, no table row per step: the loss plot has them
        start = time.perf_counter()
        if resume_from:
            logger.info("resuming at step %s from %s (the last save before the process stopped)",
                        resume_from.name.rpartition("-")[2], resume_from)
        trainer.train(resume_from_checkpoint=str(model_path) if previous_steps is not None
                      else str(resume_from) if resume_from else None)
        seconds = time.perf_counter() - start
    first_step = previous_steps or 0
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log and log["step"] > first_step]
    rates = [log["learning_rate"] for log in trainer.state.log_history
             if "learning_rate" in log and log["step"] > first_step]
    steps = trainer.state.global_step - first_step

    def write_state(folder: Path) -> None:  # the files Trainer's resume_from_checkpoint reads, beside the weights
        trainer._save_optimizer_and_scheduler(str(folder))
        trainer._save_rng_state(str(folder))  # one file per process
        if trainer.args.should_save:  # the main process
            trainer.state.save_to_json(str(folder / TRAINER_STATE))

    merge, state = lora is not None and lora.merge, write_state if save_state else None
    if trainer.accelerator.num_processes == 1:
        save_checkpoint(trainer.model, tokenizer, output_dir, merge_adapter=merge, extra=state)
    else:
        save_distributed(trainer, tokenizer, output_dir, merge, state)
    logger.info("trained %d steps on %d records in %.1fs", steps, len(records), seconds)
    rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log and log["step"] > first_step]
    if saves and trainer.args.should_save:  # the checkpoint is whole: the periodic saves are done with
        shutil.rmtree(saves, ignore_errors=True)
    return TrainResult(steps=steps, examples=len(records), seconds=seconds, loss_history=losses,
                       reward_history=rewards, learning_rates=rates, epochs=trainer.state.epoch,
                       resumed_from_step=int(resume_from.name.rpartition("-")[2]) if resume_from else None)


def last_save(folder: Path) -> Path | None:
    """The newest `checkpoint-<step>` a trainer saved in `folder` that is whole (its trainer state written last)."""
    saves = [p for p in folder.glob("checkpoint-*") if (p / TRAINER_STATE).is_file()] if folder.is_dir() else []
    return max(saves, key=lambda p: int(p.name.rpartition("-")[2]), default=None)


def save_distributed(trainer, tokenizer, output_dir: str | Path, merge_adapter: bool,
                     write_state: Callable[[Path], None] | None = None) -> None:
    """Save from several processes: every rank takes part in gathering the sharded weights (ZeRO-3, FSDP), the
    main one writes them. A LoRA adapter to merge is saved first, then merged over its base on the main process.

    `write_state` (for init resume) runs on every rank into a staging folder beside the checkpoint, since each
    rank saves its part (its RNG state; its optimizer shard under ZeRO-3 or FSDP). The main process then moves
    the folder's files into the checkpoint before renaming it into place, so the checkpoint appears whole or not
    at all."""
    accelerator = trainer.accelerator
    state_dict = accelerator.get_state_dict(trainer.model)  # collective: all ranks call it
    output_dir = Path(output_dir)
    staging = output_dir.parent / f".{output_dir.name}.trainer-state"
    if write_state is not None:
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        write_state(staging)
        accelerator.wait_for_everyone()

    def add_state(folder: Path) -> None:
        for path in staging.iterdir():
            shutil.move(str(path), folder / path.name)
        staging.rmdir()

    if accelerator.is_main_process:
        model = accelerator.unwrap_model(trainer.model)
        if merge_adapter:
            with tempfile.TemporaryDirectory() as folder:
                model.save_pretrained(folder, state_dict=state_dict)
                tokenizer.save_pretrained(folder)
                merged = load_model(folder, "float32")  # the base with the adapter merged in
                save_checkpoint(merged, tokenizer, output_dir,
                                extra=lambda tmp: shutil.copytree(folder, tmp / "adapter"))
        else:
            save_checkpoint(model, tokenizer, output_dir, extra=add_state if write_state else None,
                            state_dict=state_dict)
    accelerator.wait_for_everyone()


TRAINER_STATE = "trainer_state.json"


def saved_steps(checkpoint: str | Path) -> int | None:
    """The optimizer steps behind a checkpoint saved with its trainer state; None when it has none."""
    path = Path(checkpoint) / TRAINER_STATE
    return json.loads(path.read_text())["global_step"] if path.is_file() else None


def trainable_model(model_path: str | Path, lora: LoraSettings | None, attn_implementation: str | None = None):
    """The model to train, in float32 (small updates vanish in bf16 weights), and the PEFT config for TRL to wrap
    it with. An adapter folder trained with LoRA again continues that adapter, so every iteration's checkpoint
    stays one adapter over the same base model (which vLLM can serve); trained in full, it is merged first."""
    if lora is None:
        return load_model(model_path, "float32", attn_implementation).train(), None
    if is_adapter(model_path):
        from peft import PeftModel

        base = load_model(adapter_base(model_path), "float32", attn_implementation)
        return PeftModel.from_pretrained(base, str(model_path), is_trainable=True).train(), None
    from peft import LoraConfig

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
                        target_modules=lora.target_modules)
    return load_model(model_path, "float32", attn_implementation).train(), config


def model_loss_sft_trainer() -> type:
    """SFTTrainer whose loss is the model's own: the token-mean cross-entropy on the labels TRL's collator builds
    (-100 on prompt and padding), which is the loss TRL's tiled head computes, without its extra metrics."""
    from transformers import Trainer
    from trl import SFTTrainer

    class ModelLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False  # as TRL does: a training forward needs no KV cache
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return ModelLossSFTTrainer
