"""Training a token-classification PRM on step labels (records.StepLabels rows), the way TRL's PRMTrainer did.

TRL removed its experimental PRMTrainer in September 2026 (huggingface/trl#7133; TRL 1.16 has none), so this is
transformers' `Trainer` on `AutoModelForTokenClassification` (two labels) over a backbone: the policy's own
weights or another causal LM. Each row is tokenized as TRL did: the prompt, then every step followed by the
separator; the target sits on the last token of each separator and every other token gets -100 (kept as a float
target, never cast to a class: TRL's PR #2127 trained ignored tokens as True). The loss is cross-entropy against
the target distribution [1 - y, y]: y is the step's share of successful rollouts (soft labels), 0/1 (hard) or
its relative label (prm.labels). `last_step_weight` scales the last step's share of the loss: its target is the
outcome itself (0 or 1), which a PRM can hardly predict before it has learnt to judge the steps, and whose large
errors otherwise drown the steps' finer signal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Trainer

from ..exceptions import ConfigError
from ..io import scratch_folder
from ..models import is_adapter, load_tokenizer, save_checkpoint
from ..progress import quiet_trainer_progress
from .labels import training_targets
from .token_classification import encode_steps, write_prm_config

IGNORED = -100.0


@dataclass
class PRMTrainResult:
    steps: int
    examples: int  # labelled samples trained on
    epochs: float
    seconds: float
    loss_history: list[float] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        return {"steps": self.steps, "examples": self.examples, "seconds": round(self.seconds, 2),
                "examples_per_s": round(self.examples * self.epochs / self.seconds, 1) if self.seconds else None,
                "loss_first": self.loss_history[0] if self.loss_history else None,
                "loss_last": self.loss_history[-1] if self.loss_history else None}


def tokenize(tokenizer, row: dict, separator: str, labels: str = "soft", last_step_weight: float = 1.0) -> dict:
    """input_ids; labels: the step's target (prm.labels.training_targets) at each separator's last token, -100 at
    every other token; label_weights: each labelled token's weight in the loss (`last_step_weight` on the last
    step, 1 on the others, 0 where there is no label)."""
    separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
    ids, positions = encode_steps(tokenizer, row["prompt"], row["completions"], separator_ids)
    token_labels, weights = [IGNORED] * len(ids), [0.0] * len(ids)
    for position, target in zip(positions, training_targets(row, labels)):
        token_labels[position], weights[position] = float(target), 1.0
    if positions:
        weights[positions[-1]] = float(last_step_weight)
    return {"input_ids": ids, "labels": token_labels, "label_weights": weights}


def collate(pad_id: int):
    def batch(features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), IGNORED)
        weights = torch.zeros((len(features), width))
        for row, f in enumerate(features):
            ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[row, : len(f["input_ids"])] = 1
            labels[row, : len(f["labels"])] = torch.tensor(f["labels"])
            weights[row, : len(f["label_weights"])] = torch.tensor(f["label_weights"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "label_weights": weights}

    return batch


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
                       num_items_in_batch=None) -> torch.Tensor:
    """Cross-entropy of the two-label logits against [1 - y, y] at the labelled tokens only, each weighted (by
    `weights`, else 1), summed over the labelled tokens' count."""
    labelled = labels != IGNORED
    log_probs = torch.log_softmax(logits[labelled].float(), dim=-1)
    target = labels[labelled].to(log_probs.dtype)
    losses = -(target * log_probs[:, 1] + (1 - target) * log_probs[:, 0])
    if weights is not None:
        losses = losses * weights[labelled].to(losses.dtype)
    count = num_items_in_batch if num_items_in_batch is not None else labelled.sum()  # the Trainer counts labels
    return losses.sum() / torch.as_tensor(count, device=losses.device).clamp(min=1)


class StepLabelTrainer(Trainer):
    """transformers' Trainer with the soft, weighted loss: the batch's label_weights go to the loss, not the model."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, weights = inputs.pop("labels"), inputs.pop("label_weights")
        outputs = model(**inputs)
        loss = soft_cross_entropy(outputs.logits, labels, weights, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


def train_prm(backbone: str | Path, rows: list[dict], output_dir: str | Path, *, separator: str = "\n",
              labels: str = "soft", last_step_weight: float = 1.0, learning_rate: float = 5e-4,
              num_epochs: float = 3.0, batch_size: int = 32, seed: int = 0, bf16: bool = False) -> PRMTrainResult:
    """Train a two-label token classifier on `backbone`'s weights and save it (with its tokenizer and
    prm_config.json) to `output_dir`, written to a temporary folder and renamed into place."""
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    if not rows:
        raise ValueError("no step labels to train the PRM on (see prm_labels.jsonl)")
    if is_adapter(backbone):
        raise ConfigError(f"prm.backbone: {backbone} is a LoRA adapter; give a full model folder (or train with "
                          "lora.merge: true)")
    tokenizer = load_tokenizer(backbone)
    hf_logging.set_verbosity_error()  # "some weights were newly initialized": the head, as intended
    set_seed(seed)  # the new head's initial weights too, not only the Trainer's shuffling
    model = AutoModelForTokenClassification.from_pretrained(
        str(backbone), num_labels=2, id2label={0: "wrong", 1: "right"}, label2id={"wrong": 0, "right": 1},
        dtype=torch.float32)
    hf_logging.set_verbosity_warning()
    dataset = Dataset.from_list([tokenize(tokenizer, row, separator, labels, last_step_weight) for row in rows])
    with scratch_folder(output_dir, "trainer-scratch") as scratch:  # cleared again by a rerun after a kill
        args = TrainingArguments(
            output_dir=str(scratch), learning_rate=learning_rate, num_train_epochs=num_epochs,
            per_device_train_batch_size=batch_size, lr_scheduler_type="linear", warmup_steps=0.05, logging_steps=1,
            save_strategy="no", report_to="none", seed=seed, bf16=bf16, use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True)
        trainer = StepLabelTrainer(model=model, args=args, train_dataset=dataset,
                                   data_collator=collate(tokenizer.pad_token_id))
        quiet_trainer_progress(trainer, "PRM training")  # one bar; the losses are in the result
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    save_checkpoint(trainer.model, tokenizer, output_dir, extra=lambda folder: write_prm_config(folder, separator))
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return PRMTrainResult(steps=trainer.state.global_step, examples=len(rows), epochs=num_epochs, seconds=seconds,
                          loss_history=losses)
