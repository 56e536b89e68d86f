import re
from pathlib import Path

import pytest

from rft_helpers.config import DatasetSource, EvalSetConfig, TaskConfig
from rft_helpers.data import build_prompt, dataset_task, generate_task, load_eval_set, seed_examples, write_task
from rft_helpers.exceptions import ConfigError
from rft_helpers.io import read_jsonl, write_jsonl
from rft_helpers.rewards import extract_answer

from conftest import needs_shared_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout


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
        if op == "*":
            assert len(a) == 2 and len(b) == 1
        else:  # a two-digit number with one of two or three digits
            assert sorted([len(a), len(b)]) in ([2, 2], [2, 3])
        assert row["kind"] == f"{'x' if op == '*' else op} {len(b) if op == '*' else max(len(a), len(b))}-digit"
        assert extract_answer(row["solution"]) == row["answer"]
    assert seen_ops == {"+", "-", "*"}
    assert splits["seed"] == splits["train"][:5]
    short = generate_task(task.model_copy(update={"long_operand_share": 0.0}), seed=0)
    assert not any("3-digit" in row["kind"] for row in short["train"])


@needs_shared_data
def test_second_sets_load_from_local_files_with_their_reference_answers(tmp_path):
    gsm8k = load_eval_set(EvalSetConfig(path=str(SHARED / "gsm8k" / "test.jsonl"), num_questions=5))
    assert len(gsm8k) == 5 and gsm8k[0]["answer"] == "18" and gsm8k[0]["id"] == "gsm8k-00000"
    assert "<<" not in gsm8k[0]["solution"] and gsm8k[0]["solution"].endswith("#### 18")
    math = load_eval_set(EvalSetConfig(name="math500", path=str(SHARED / "math" / "test500.jsonl"),
                                       question_field="problem", answer_field="solution", num_questions=3))
    assert math[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)"  # nested braces inside \boxed{}

    messy = tmp_path / "messy.jsonl"
    write_jsonl(messy, [{"q": "1+1?", "a": "2"}, {"q": "", "a": "3"}, {"q": "2+2?", "a": "4"}])
    rows = load_eval_set(EvalSetConfig(name="mine", path=str(messy), question_field="q", answer_field="a",
                                       num_questions=None))
    assert [r["answer"] for r in rows] == ["2", "4"] and rows[0]["solution"] == ""  # empty row skipped
    with pytest.raises(ConfigError, match="has no field 'question'"):
        load_eval_set(EvalSetConfig(name="mine", path=str(messy)))
    with pytest.raises(ConfigError, match="eval.second_set.path: cannot load"):
        load_eval_set(EvalSetConfig(path=str(tmp_path / "nothing.jsonl")))


@needs_shared_data
def test_dataset_tasks_from_gsm8k_and_math_files():
    gsm8k = TaskConfig(name="dataset", num_train=40, num_test=10, seed_size=8,
                       train=DatasetSource(path=str(SHARED / "gsm8k" / "train.jsonl")),
                       test=DatasetSource(path=str(SHARED / "gsm8k" / "test.jsonl")))
    splits = dataset_task(gsm8k, seed=0)
    assert [len(splits[s]) for s in ("train", "test", "seed")] == [40, 10, 8]
    assert splits["test"][0]["answer"] == "18"  # test: the first rows, in order; train: a seeded shuffle
    assert dataset_task(gsm8k, seed=0)["train"] == splits["train"] != dataset_task(gsm8k, seed=1)["train"]
    assert all("<<" not in r["solution"] and r["solution"].endswith(f"#### {r['answer']}") for r in splits["seed"])
    assert len({r["id"] for r in splits["train"]}) == 40

    math = TaskConfig(name="dataset", num_train=7500, num_test=500, seed_size=0,
                      train=DatasetSource(path=str(SHARED / "math" / "train.jsonl"), question_field="problem"),
                      test=DatasetSource(path=str(SHARED / "math" / "test500.jsonl"), question_field="problem",
                                         solution_field="solution"))
    splits = dataset_task(math, seed=0)
    assert len(splits["train"]) == 7498 and len(splits["test"]) == 500  # two training rows have no answer
    assert {"level", "subject"} <= set(splits["test"][0]) and splits["test"][0]["solution"]
    with pytest.raises(ConfigError, match=r"task.seed_size: 4 asked, but only 0 training rows .* carry a worked"):
        dataset_task(math.model_copy(update={"seed_size": 4}), seed=0)
    with pytest.raises(ValueError, match="task.name dataset needs task.train and task.test"):
        TaskConfig(name="dataset")


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty; give a JSONL file"),
    (b'{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": 4\n', ":2: not valid JSON (Expecting ',' delimiter"),
    (b'{"question": "1+1?", "answer": "2"}\n{"question": "caf\xe9", "answer": "1"}\n', ":2: not UTF-8 text"),
    (b'["1+1?", "2"]\n', ":1: a JSON list, not an object"),
])
def test_a_broken_dataset_file_is_one_line_naming_file_and_line(tmp_path, content, expected):
    from rft_helpers.config import DatasetSource
    from rft_helpers.data import load_dataset_rows
    from rft_helpers.exceptions import ConfigError

    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_dataset_rows(DatasetSource(path=str(path)), "task.train")
    assert str(err.value).startswith(f"task.train.path: {path}") and expected in str(err.value)
    assert "\n" not in str(err.value)
