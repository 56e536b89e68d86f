"""Tasks and prompts.

A task row is `{"id", "question", "answer", "solution"}` (solution: a reference worked solution, may be empty).
A prompt is a list of chat messages; every stage builds it with `build_prompt`, so sampling, training and
evaluation see exactly the same text.
"""

from __future__ import annotations

import random
from pathlib import Path

from .config import TaskConfig
from .io import read_jsonl, write_jsonl

ANSWER_PREFIX = "Answer: "
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_problem(rng: random.Random, config: TaskConfig) -> tuple[str, str, str]:
    """One left-to-right chain like '7+5*3-4', its step-by-step solution and its final answer."""
    while True:
        value = rng.randint(1, config.max_operand)
        question, steps = str(value), []
        for _ in range(rng.randint(config.min_ops, config.max_ops)):
            op = rng.choice(list(_OPS))
            operand = rng.randint(1, config.max_operand)
            result = _OPS[op](value, operand)
            if not 0 <= result <= config.max_value:
                break  # keep every step small enough for a tiny model: draw the chain again
            question += f"{op}{operand}"
            steps.append(f"{value}{op}{operand}={result}")
            value = result
        else:
            solution = "\n".join(steps) + f"\n{ANSWER_PREFIX}{value}"
            return f"{question}=?", solution, str(value)


def generate_arithmetic(config: TaskConfig, seed: int) -> dict[str, list[dict]]:
    """Deterministic train/test/seed splits; no question appears in two splits."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    total = config.num_train + config.num_test
    attempts = 0
    while len(rows) < total:
        attempts += 1
        if attempts > 50 * total:
            raise ValueError(
                f"task: only {len(rows)} distinct questions exist for these settings, {total} asked; "
                "raise max_operand/max_ops or lower num_train/num_test"
            )
        question, solution, answer = arithmetic_problem(rng, config)
        if question in seen:
            continue
        seen.add(question)
        rows.append({"id": f"arith-{len(rows):05d}", "question": question, "answer": answer, "solution": solution})
    train, test = rows[: config.num_train], rows[config.num_train :]
    return {"train": train, "test": test, "seed": train[: config.seed_size]}


def write_task(config: TaskConfig, seed: int, data_dir: Path) -> dict[str, Path]:
    """Write the splits as JSONL (loadable with `datasets.load_dataset("json", ...)`)."""
    splits = generate_arithmetic(config, seed)
    paths = {}
    for name, rows in splits.items():
        paths[name] = data_dir / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    return paths


def load_split(data_dir: Path, split: str, limit: int | None = None) -> list[dict]:
    rows = read_jsonl(Path(data_dir) / f"{split}.jsonl")
    return rows[:limit] if limit else rows


def read_system_prompt(config: TaskConfig) -> str | None:
    return Path(config.system_prompt_file).read_text().strip() if config.system_prompt_file else None


def build_prompt(question: str, system_prompt: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": question}]


def sft_example(row_id: str, prompt: list[dict], completion: str) -> dict:
    """The one training-record format: conversational prompt/completion (TRL trains on the completion only)."""
    return {"id": row_id, "prompt": prompt, "completion": [{"role": "assistant", "content": completion}]}


def seed_examples(rows: list[dict], system_prompt: str | None) -> list[dict]:
    """Reference solutions as training records: the warm-up data and the baseline's data."""
    return [sft_example(r["id"], build_prompt(r["question"], system_prompt), r["solution"]) for r in rows]
