"""What only a GPU can show: sampling and training speed on a ~0.5B model built from a Qwen2.5-0.5B config.

Random weights (no download) and the toolkit's character tokenizer; every sample is exactly `--new-tokens` long
(EOS ignored), so the numbers are throughput, not model quality. Prints one JSON line:

- sampling: the transformers engine (batched, one prompt encoding per n samples) vs a naive loop of one
  `generate` call per sample, on the same prompts and lengths; and vLLM where it is installed;
- training: TRL SFT (`rft_helpers.train.sft_train`, bf16 autocast) real tokens/s and peak GPU memory with each
  `train.batching` (padded, length_grouped, padding_free), and each one's speedup over padded batches.

Usage: python bench/gpu_check.py [--prompts 64 --n 8 --new-tokens 256]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from rft_helpers.data import build_prompt
from rft_helpers.tasks import word_arithmetic_problem
from rft_helpers.records import train_example
from rft_helpers.models import build_char_tokenizer, save_checkpoint
from rft_helpers.sampling import SamplingParams, get_engine

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=4096, rope_theta=1e6,
                  tie_word_embeddings=True)


def build_model(folder: Path, shape: dict) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = build_char_tokenizer()
    config = AutoConfig.for_model("qwen2", pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                  bos_token_id=None, **shape)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    save_checkpoint(model, tokenizer, folder)
    return sum(p.numel() for p in model.parameters())


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_generate(engine, prompts, params) -> dict:
    sync()
    start = time.perf_counter()
    outputs = engine.generate(prompts, params)
    sync()
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for completions in outputs for c in completions)
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def sampling(model_dir: Path, args) -> dict:
    rng = random.Random(0)
    prompts = [build_prompt(word_arithmetic_problem(rng, 3)[0]) for _ in range(args.prompts)]
    params = SamplingParams(n=args.n, temperature=0.7, max_new_tokens=args.new_tokens, seed=0, ignore_eos=True)
    engine = get_engine("transformers", model_dir, dtype="bfloat16", batch_size=args.batch_size)
    engine.generate(prompts[:2], SamplingParams(n=2, max_new_tokens=8, ignore_eos=True))  # warm-up
    result = {}
    for repeat in range(args.repeats):  # alternate the two ways, so warm-up and clocks favour neither
        for share, key in ((False, "engine_without_shared_prompt"), (True, "engine")):
            engine.share_prompt_cache = share
            result[key] = timed_generate(engine, prompts, params)  # the last repeat is kept
    engine.share_prompt_cache = True
    # Naive: one generate call per sample (n=1, batch of one), on as many samples as fit a short run.
    naive = get_engine("transformers", model_dir, dtype="bfloat16", batch_size=1)
    one = SamplingParams(n=1, temperature=0.7, max_new_tokens=args.new_tokens, seed=0, ignore_eos=True)
    result["naive"] = timed_generate(naive, prompts[: args.naive_samples], one)
    result["speedup"] = round(result["engine"]["tokens_per_s"] / result["naive"]["tokens_per_s"], 1)
    engine.close()
    naive.close()
    if importlib.util.find_spec("vllm") and torch.cuda.is_available():
        start = time.perf_counter()
        llm = get_engine("vllm", model_dir, dtype="bfloat16", seed=0, gpu_memory_utilization=0.6)
        load = time.perf_counter() - start
        result["vllm"] = timed_generate(llm, prompts, params) | {"load_seconds": round(load, 1)}
        llm.close()
    else:
        result["vllm"] = "not installed on this machine"
    return result


def training(model_dir: Path, args) -> dict:
    from rft_helpers.train import sft_train

    rng = random.Random(1)
    examples = []
    for i in range(args.train_examples):  # completions of varied length, like kept samples
        question, solution, _ = word_arithmetic_problem(rng, 3)
        completion = "\n".join([solution] * rng.randint(1, 12))
        examples.append(train_example(str(i), build_prompt(question), completion))
    tokenizer = build_char_tokenizer()
    texts = [tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=False) for e in examples]
    real_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    runs = {}
    for batching in ("padded", "length_grouped", "padding_free"):  # the last uses flash-attn where installed
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as out:
            result = sft_train(model_dir, examples, Path(out) / "ckpt", learning_rate=1e-5,
                               batch_size=args.train_batch, num_epochs=1, bf16=True, batching=batching)
        runs[batching] = {
            "steps": result.steps, "seconds": round(result.seconds, 2),
            "real_tokens_per_s": round(real_tokens / result.seconds, 1),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
            "loss_first": result.loss_history[0] if result.loss_history else None,
            "loss_last": result.loss_history[-1] if result.loss_history else None}
    padded = runs["padded"]["real_tokens_per_s"]
    return {"examples": len(examples), "real_tokens": real_tokens,
            "flash_attn": importlib.util.find_spec("flash_attn") is not None, "runs": runs,
            "speedup_over_padded": {b: round(r["real_tokens_per_s"] / padded, 2) for b, r in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per generate call")
    parser.add_argument("--naive-samples", type=int, default=4)
    parser.add_argument("--train-examples", type=int, default=512)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each engine variant (last kept)")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a tiny model and workload: check the script on a CPU")
    args = parser.parse_args()
    shape = QWEN25_05B
    if args.smoke:
        shape = QWEN25_05B | dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=1, vocab_size=1024)
        args.prompts, args.n, args.new_tokens, args.train_examples = 4, 2, 8, 16
    elif not torch.cuda.is_available():
        raise SystemExit("this check needs a CUDA GPU (--smoke runs a tiny version on a CPU)")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "qwen2.5-0.5b-random"
        parameters = build_model(model_dir, shape)
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        report = {"gpu": gpu, "torch": torch.__version__, "parameters": parameters,
                  "prompts": args.prompts, "n": args.n, "new_tokens": args.new_tokens}
        print(json.dumps(report), flush=True)  # partial results first: a run cut short still reports
        report["sampling"] = sampling(model_dir, args)
        print(json.dumps(report), flush=True)
        if not args.no_training:
            report["training"] = training(model_dir, args)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":  # vLLM spawns workers
    main()
