import re

import pytest

from rft_helpers.config import TaskConfig
from rft_helpers.data import build_prompt, generate_task, seed_examples, write_task
from rft_helpers.io import read_jsonl
from rft_helpers.rewards import extract_answer


def test_generation_is_seeded_and_splits_are_disjoint(small_task):
    a, b = generate_task(small_task, seed=1), generate_task(small_task, seed=1)
    assert a == b
    assert generate_task(small_task, seed=2)["train"] != a["train"]
    train_q = {r["question"] for r in a["train"]}
    assert len(a["train"]) == 40 and len(a["test"]) == 10 and len(train_q) == 40
    assert not train_q & {r["question"] for r in a["test"]}
    assert a["seed"] == a["train"][:8]


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_solutions_add_column_by_column(digits):
    for row in generate_task(TaskConfig(digits=digits, num_train=30, num_test=5, seed_size=0), seed=0)["train"]:
        x, y = re.fullmatch(r"(\d+)\+(\d+)=\?", row["question"]).groups()
        assert len(x) == len(y) == digits and row["answer"] == str(int(x) + int(y))
        lines = row["solution"].split("\n")
        assert len(lines) == digits + 1 and extract_answer(row["solution"]) == row["answer"]
        carry = 0
        for column, line in enumerate(lines[:-1]):
            terms, total = line.split("=")
            assert terms.split("+") == [x[-1 - column], y[-1 - column]] + ([str(carry)] if carry else [])
            assert int(total) == int(x[-1 - column]) + int(y[-1 - column]) + carry
            carry = int(total) // 10


def test_too_many_questions_for_the_digits_is_an_error():
    with pytest.raises(ValueError, match="digits=1"):
        generate_task(TaskConfig(digits=1, num_train=100, num_test=10, seed_size=0), seed=0)


def test_written_splits_load_with_datasets(small_task, tmp_path):
    from datasets import load_dataset

    paths = write_task(small_task, 0, tmp_path)
    ds = load_dataset("json", data_files={k: str(v) for k, v in paths.items()})
    assert ds["train"].num_rows == 40 and set(ds["train"].column_names) == {"id", "question", "answer", "solution"}
    assert read_jsonl(paths["seed"]) == generate_task(small_task, 0)["seed"]


def test_prompts_and_seed_examples():
    assert build_prompt("1+1=?") == [{"role": "user", "content": "1+1=?"}]
    assert build_prompt("1+1=?", "Be brief.")[0] == {"role": "system", "content": "Be brief."}
    (example,) = seed_examples([{"id": "q", "question": "1+1=?", "answer": "2", "solution": "1+1=2\nAnswer: 2"}], None)
    assert example == {"id": "q", "prompt": [{"role": "user", "content": "1+1=?"}],
                       "completion": [{"role": "assistant", "content": "1+1=2\nAnswer: 2"}]}


def test_word_arithmetic_questions_are_plain_english_with_numeric_answers():
    task = TaskConfig(name="word_arithmetic", digits=3, num_train=60, num_test=10, seed_size=5)
    splits = generate_task(task, seed=0)
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    seen_ops = set()
    for row in splits["train"] + splits["test"]:
        a, op, b, result = re.fullmatch(r"(\d+) ([-+*]) (\d+) = (\d+)", row["solution"].split("\n")[0]).groups()
        seen_ops.add(op)
        assert ops[op](int(a), int(b)) == int(result) == int(row["answer"]) >= 0
        assert a in row["question"] and b in row["question"] and not row["question"].startswith(a)
        assert 2 <= len(a) <= 3 and (len(b) == 1 if op == "*" else 2 <= len(b) <= 3)
        assert extract_answer(row["solution"]) == row["answer"]
    assert seen_ops == {"+", "-", "*"}
    assert splits["seed"] == splits["train"][:5]
