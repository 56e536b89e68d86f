"""A hand-written RFT loop, the baseline of issue 21: what a user writes before reaching for a toolkit.

One AdamW optimizer at a constant learning rate, kept across iterations; each iteration samples
`sample.num_questions` x `sample.n` completions at `sample.temperature`, keeps every correct one, trains
`train.num_epochs` epochs at `train.batch_size` on them (loss on the completion only) and answers the test
questions greedily. Only the questions (the same ones the toolkit samples) and the answer check come from
rft_helpers. Prints one JSON line: test accuracy per iteration, kept samples, seconds.

    python bench/hand_loop.py bench/hand_loop_toolkit.yaml --seed 0      # the toolkit side: rft run ... --set seed=0

bf16 autocast where the recipe samples in bfloat16 (model.dtype) and trains in bf16 (train.bf16), as the toolkit;
`--set model.dtype=float32 --set train.bf16=false` on a CPU without bf16 instructions (AVX2), where bf16 is ~8x
slower than float32.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rft_helpers.data import generate_task  # noqa: E402
from rft_helpers.gguf_models import convert_gguf  # noqa: E402
from rft_helpers.recipes import load_config  # noqa: E402
from rft_helpers.rewards.outcome import exact_answer  # noqa: E402


def chat(tokenizer, question: str, answer: str | None = None) -> list[int]:
    messages = [{"role": "user", "content": question}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=answer is None, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def generate(model, tokenizer, questions: list[str], n: int, temperature: float, max_new_tokens: int,
             bf16: bool, batch: int = 64) -> list[list[str]]:
    model.eval()
    out = []
    for i in range(0, len(questions), batch):
        prompts = [chat(tokenizer, q) for q in questions[i : i + batch]]
        width = max(map(len, prompts))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])  # left padding
        mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
        with autocast(bf16):
            sequences = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, num_return_sequences=n,
                pad_token_id=tokenizer.pad_token_id,
                **({"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature
                   else {"do_sample": False}))
        texts = tokenizer.batch_decode(sequences[:, width:], skip_special_tokens=True)
        out += [texts[j * n : (j + 1) * n] for j in range(len(prompts))]
    return out


def train_epochs(model, tokenizer, optimizer, pairs: list[tuple[str, str]], epochs: float, batch: int,
                 bf16: bool, rng: random.Random) -> float:
    model.train()
    losses = []
    for _ in range(int(epochs)):
        rng.shuffle(pairs)
        for i in range(0, len(pairs), batch):
            rows = []
            for question, answer in pairs[i : i + batch]:
                prompt, full = chat(tokenizer, question), chat(tokenizer, question, answer)
                rows.append((full, [-100] * len(prompt) + full[len(prompt) :]))
            width = max(len(ids) for ids, _ in rows)
            ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
            mask = torch.tensor([[1] * len(ids_) + [0] * (width - len(ids_)) for ids_, _ in rows])
            with autocast(bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    return sum(losses) / max(len(losses), 1)


def accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int, bf16: bool) -> float:
    answers = [texts[0] for texts in generate(model, tokenizer, [r["question"] for r in rows], 1, 0.0, max_new_tokens,
                                              bf16)]
    rewards = exact_answer(answers, [r["answer"] for r in rows])
    return sum(r == 1.0 for r in rewards) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", help="the toolkit recipe whose task, sample and train settings to follow")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as rft run's --set")
    args = parser.parse_args()
    config = load_config(args.params, [f"seed={args.seed}", *args.set])
    sample_bf16, train_bf16 = config.model.dtype == "bfloat16", config.train.bf16  # as the toolkit's engine, trainer
    data = generate_task(config.task, config.seed)
    torch.manual_seed(config.seed)
    path = convert_gguf(config.model.name_or_path, config.model.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate)  # constant, kept throughout
    rng = random.Random(config.seed)
    start = time.time()
    result = {"seed": config.seed, "accuracy": {0: accuracy(model, tokenizer, data["test"], config.eval.max_new_tokens,
                                                          sample_bf16)},
              "kept": {}, "solved_questions": {}, "seconds": {}}
    for iteration in range(1, config.iterations + 1):
        tick = time.time()
        questions = random.Random(config.seed * 1000 + iteration).sample(data["train"], config.sample.num_questions)
        samples = generate(model, tokenizer, [q["question"] for q in questions], config.sample.n,
                           config.sample.temperature, config.sample.max_new_tokens, sample_bf16)
        pairs, solved = [], 0
        for question, texts in zip(questions, samples):
            right = [t for t, r in zip(texts, exact_answer(texts, [question["answer"]] * len(texts))) if r == 1.0]
            pairs += [(question["question"], t) for t in right]
            solved += bool(right)
        train_epochs(model, tokenizer, optimizer, pairs, config.train.num_epochs, config.train.batch_size, train_bf16,
                     rng)
        result["accuracy"][iteration] = accuracy(model, tokenizer, data["test"], config.eval.max_new_tokens,
                                                 sample_bf16)
        result["kept"][iteration], result["solved_questions"][iteration] = len(pairs), solved
        result["seconds"][iteration] = round(time.time() - tick, 1)
        print(json.dumps({"iteration": iteration, "accuracy": result["accuracy"][iteration], "kept": len(pairs),
                          "solved_questions": solved, "seconds": result["seconds"][iteration],
                          "accuracy_0": result["accuracy"][0]}), file=sys.stderr, flush=True)  # a cut run keeps these
    result["wall_s"] = round(time.time() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
