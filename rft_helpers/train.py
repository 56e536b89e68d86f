"""03_train: supervised fine-tuning with TRL's SFTTrainer on conversational prompt/completion records.

The loss covers the completion only (TRL's default for prompt/completion data), so the model learns to answer,
not to repeat the question. The checkpoint is written to a temporary folder and renamed into place.

On a CPU the loss is the model's own cross-entropy on the same labels. TRL's tiled LM head, which also computes
entropy and token-accuracy metrics, made each step 1.27x slower on SmolLM2-135M (batch 4, bf16 autocast). On a GPU
TRL's head stays: it never holds the full (batch, length, vocabulary) logits in memory.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .models import load_model, load_tokenizer, save_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    steps: int
    examples: int
    seconds: float
    loss_history: list[float] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        losses = self.loss_history
        return {
            "steps": self.steps, "examples": self.examples, "seconds": round(self.seconds, 2),
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        }


def sft_train(
    model_path: str | Path,
    examples: list[dict],
    output_dir: str | Path,
    *,
    learning_rate: float,
    batch_size: int,
    num_epochs: float = 1.0,
    max_steps: int | None = None,
    seed: int = 0,
    bf16: bool = False,
    gradient_checkpointing: bool = False,
) -> TrainResult:
    """Fine-tune the model at `model_path` on `examples` and save model + tokenizer to `output_dir`."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise ValueError("no training examples: every sample was filtered out (see scored.jsonl reject_reason)")
    tokenizer = load_tokenizer(model_path)
    model = load_model(model_path, "float32").train()  # float32 weights: small updates vanish in bf16
    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    with tempfile.TemporaryDirectory(prefix="rft-trainer-") as scratch:  # trainer logs; the model goes to output_dir
        args = SFTConfig(
            output_dir=scratch,
            learning_rate=learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=0.05,  # a fraction of the steps
            per_device_train_batch_size=batch_size,
            num_train_epochs=num_epochs,
            max_steps=max_steps or -1,
            max_length=getattr(model.config, "max_position_embeddings", None),
            logging_steps=1,
            optim="adamw_torch_fused",
            gradient_checkpointing=gradient_checkpointing,  # TRL turns it on by default
            save_strategy="no",
            report_to="none",
            seed=seed,
            bf16=bf16,  # autocast only; False by default since TRL refuses to start on CPU with its bf16 default
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
        )
        trainer_class = SFTTrainer if torch.cuda.is_available() else model_loss_sft_trainer()
        trainer = trainer_class(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]

    save_checkpoint(trainer.model, tokenizer, output_dir)
    logger.info("trained %d steps on %d examples in %.1fs", trainer.state.global_step, len(examples), seconds)
    return TrainResult(steps=trainer.state.global_step, examples=len(examples), seconds=seconds, loss_history=losses)


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
