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


def addition_problem(rng: random.Random, digits: int) -> tuple[str, str, str]:
    """A question like '59+63=?', its column-by-column solution and its answer.

    One line per column, right to left, with the carry written out ('9+3=12', then '5+6+1=12'), then the answer:
    each line needs two digits of the question, the carry from the line above and one addition fact.
    """
    low, high = 10 ** (digits - 1), 10**digits - 1
    a, b = rng.randint(low, high), rng.randint(low, high)
    lines, carry = [], 0
    for x, y in zip(reversed(str(a)), reversed(str(b))):
        total = int(x) + int(y) + carry
        lines.append(f"{x}+{y}{f'+{carry}' if carry else ''}={total}")
        carry = total // 10
    return f"{a}+{b}=?", "\n".join(lines) + f"\n{ANSWER_PREFIX}{a + b}", str(a + b)


_WORDED = {
    "+": ("What is {a} + {b}?", "What is {a} plus {b}?", "Add {a} and {b}."),
    "-": ("What is {a} - {b}?", "What is {a} minus {b}?", "Subtract {b} from {a}."),
    "*": ("What is {a} x {b}?", "What is {a} times {b}?", "Multiply {a} by {b}."),
}


def word_arithmetic_problem(rng: random.Random, digits: int) -> tuple[str, str, str]:
    """A question in plain English ('What is 512 minus 96?'), a short worked answer and the number.

    Sums and differences take operands of 2..digits digits (differences stay non-negative); products multiply a
    two-digit number by a one-digit one.
    """
    op = rng.choice(list(_WORDED))
    if op == "*":
        a, b = rng.randint(10, 99), rng.randint(2, 9)
    else:
        a, b = (rng.randint(10, 10 ** rng.randint(2, max(2, digits)) - 1) for _ in range(2))
        if op == "-" and b > a:
            a, b = b, a
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    question = rng.choice(_WORDED[op]).format(a=a, b=b)
    return question, f"{a} {op} {b} = {result}\nThe answer is {result}.", str(result)


_GENERATORS = {"addition": addition_problem, "word_arithmetic": word_arithmetic_problem}


def generate_task(config: TaskConfig, seed: int) -> dict[str, list[dict]]:
    """Deterministic train/test/seed splits; no question appears in two splits. The seed set is the first
    `seed_size` training questions, with their reference solutions."""
    rng = random.Random(seed)
    total = config.num_train + config.num_test
    make = _GENERATORS[config.name]
    seen: set[str] = set()
    rows: list[dict] = []
    attempts = 0
    while len(rows) < total:
        attempts += 1
        if attempts > 20 * total:
            raise ValueError(f"task: only {len(rows)} distinct questions found with digits={config.digits}, "
                             f"{total} asked; raise digits or lower num_train/num_test")
        question, solution, answer = make(rng, config.digits)
        if question not in seen:
            seen.add(question)
            rows.append({"id": f"{config.name}-{len(rows):05d}", "question": question, "answer": answer,
                         "solution": solution})
    train, test = rows[: config.num_train], rows[config.num_train :]
    return {"train": train, "test": test, "seed": train[: config.seed_size]}


def write_task(config: TaskConfig, seed: int, data_dir: Path) -> dict[str, Path]:
    """Write the splits as JSONL (loadable with `datasets.load_dataset("json", ...)`)."""
    splits = generate_task(config, seed)
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
