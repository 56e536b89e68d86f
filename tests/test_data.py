import re

from rft_helpers.data import build_prompt, generate_arithmetic, seed_examples, write_task
from rft_helpers.io import read_jsonl
from rft_helpers.rewards import extract_answer

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def test_generation_is_seeded_and_splits_are_disjoint(small_task):
    a, b = generate_arithmetic(small_task, seed=1), generate_arithmetic(small_task, seed=1)
    assert a == b
    assert generate_arithmetic(small_task, seed=2)["train"] != a["train"]
    train_q = {r["question"] for r in a["train"]}
    assert len(a["train"]) == 40 and len(a["test"]) == 10 and len(train_q) == 40
    assert not train_q & {r["question"] for r in a["test"]}
    assert a["seed"] == a["train"][:8]


def test_solutions_are_correct_step_by_step(small_task):
    for row in generate_arithmetic(small_task, seed=0)["train"]:
        steps = re.findall(r"^(\d+)([-+*])(\d+)=(\d+)$", row["solution"], re.M)
        assert small_task.min_ops <= len(steps) <= small_task.max_ops
        for a, op, b, c in steps:
            assert _OPS[op](int(a), int(b)) == int(c)
            assert 0 <= int(c) <= small_task.max_value
        assert extract_answer(row["solution"]) == row["answer"] == steps[-1][3]
        # the question is the chain the steps walk through
        assert row["question"] == steps[0][0] + "".join(op + b for _, op, b, _ in steps) + "=?"


def test_written_splits_load_with_datasets(small_task, tmp_path):
    from datasets import load_dataset

    paths = write_task(small_task, 0, tmp_path)
    ds = load_dataset("json", data_files={k: str(v) for k, v in paths.items()})
    assert ds["train"].num_rows == 40 and set(ds["train"].column_names) == {"id", "question", "answer", "solution"}
    assert read_jsonl(paths["seed"]) == generate_arithmetic(small_task, 0)["seed"]


def test_prompts_and_seed_examples():
    assert build_prompt("1+1=?") == [{"role": "user", "content": "1+1=?"}]
    assert build_prompt("1+1=?", "Be brief.")[0] == {"role": "system", "content": "Be brief."}
    (example,) = seed_examples([{"id": "q", "question": "1+1=?", "answer": "2", "solution": "1+1=2\nAnswer: 2"}], None)
    assert example == {"id": "q", "prompt": [{"role": "user", "content": "1+1=?"}],
                       "completion": [{"role": "assistant", "content": "1+1=2\nAnswer: 2"}]}
