"""Tasks and prompts.

A task row is a `records.Question`: id, question, answer and a reference worked solution (may be empty).
A prompt is a list of chat messages; every stage builds it with `build_prompt`, so sampling, training and
evaluation see exactly the same text.
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

from .config import DatasetSource, EvalSetConfig, TaskConfig
from .exceptions import ConfigError
from .io import write_jsonl
from .paths import is_local_path
from .records import Question, question_record, read_records, train_example
from .tasks import task_row
from .rewards.outcome import last_boxed

logger = logging.getLogger(__name__)

def generate_task(config: TaskConfig, seed: int) -> dict[str, list[dict]]:
    """Deterministic train/test/seed splits of a generated task (tasks.py); no question appears in two splits.
    The seed set is the first `seed_size` training questions, with their reference solutions."""
    rng = random.Random(seed)
    total = config.num_train + config.num_test
    seen: set[str] = set()
    rows: list[dict] = []
    attempts = 0
    while len(rows) < total:
        attempts += 1
        if attempts > 20 * total:
            raise ValueError(f"task: only {len(rows)} distinct {config.name} questions found with these settings "
                             f"(digits={config.digits}), {total} asked; raise digits or lower num_train/num_test")
        row = task_row(config, rng, f"{config.name}-{len(rows):05d}")
        if row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    train, test = rows[: config.num_train], rows[config.num_train :]
    return {"train": train, "test": test, "seed": train[: config.seed_size]}


def write_task(config: TaskConfig, seed: int, data_dir: Path) -> dict[str, Path]:
    """Write the splits as JSONL (loadable with `datasets.load_dataset("json", ...)`)."""
    splits = dataset_task(config, seed) if config.name == "dataset" else generate_task(config, seed)
    paths = {}
    for name, rows in splits.items():
        paths[name] = data_dir / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    return paths


def load_split(data_dir: Path, split: str, limit: int | None = None) -> list[dict]:
    rows = read_records(Path(data_dir) / f"{split}.jsonl", Question)
    return rows[:limit] if limit else rows


_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: 16-3-4=<<16-3-4=9>>9
_HASHES = re.compile(r"####\s*(.+?)\s*$", re.S)


def reference_answer(text: str) -> str:
    """The answer inside a reference solution: after GSM8K's `####`, in the last `\\boxed{}`, or the text itself."""
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].replace(",", "")
    return last_boxed(text) or text.strip()


def check_jsonl_file(path: Path, field: str) -> None:
    """A local JSONL file's problems as one line naming the file and line (datasets says
    `DatasetGenerationError` without a line for a bad row, and `StopIteration` for an empty file)."""
    if path.suffix != ".jsonl" or not path.is_file():
        return  # a .json file, or missing (datasets names it)
    data = path.read_bytes()
    if not data.strip():
        raise ConfigError(f"{field}.path: {path} is empty; give a JSONL file with one question per line")
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{field}.path: {path}:{lineno}: not UTF-8 text (byte {e.start} of the line); "
                              "save the file as UTF-8") from None
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{field}.path: {path}:{lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{field}.path: {path}:{lineno}: a JSON {type(row).__name__}, not an object with "
                              "the question and answer fields")


def load_dataset_rows(source: DatasetSource, field: str, limit: int | None = None, shuffle_seed: int | None = None,
                      id_prefix: str = "q") -> list[dict]:
    """Task rows {id, question, answer, solution (+ level, subject)} from a JSONL file or a hub dataset.

    `field` names the parameter (e.g. task.train) in errors. Rows without a question or an answer are skipped
    and counted in the log; a missing field is an error naming the field and the file. With `shuffle_seed`, the
    rows are shuffled before the first `limit` are taken (a training subset that is not one subject's)."""
    from datasets import load_dataset

    try:
        if is_local_path(source.path):
            check_jsonl_file(Path(source.path).expanduser(), field)
            dataset = load_dataset("json", data_files=str(Path(source.path).expanduser()), split="train")
        else:
            dataset = load_dataset(source.path, source.subset, split=source.split)
    except ConfigError:
        raise
    except Exception as e:  # datasets raises many kinds of errors for unreadable files and unknown ids
        raise ConfigError(f"{field}.path: cannot load {source.path} ({type(e).__name__}: {str(e)[:120]})") from None
    for name in (source.question_field, source.answer_field, source.solution_field):
        if name is not None and name not in dataset.column_names:
            raise ConfigError(f"{field}: {source.path} has no field {name!r} (fields: {dataset.column_names})")
    if shuffle_seed is not None:
        dataset = dataset.shuffle(seed=shuffle_seed)
    rows, skipped = [], 0
    for index, record in enumerate(dataset):
        question, answer = record[source.question_field], record[source.answer_field]
        if not question or not answer:
            skipped += 1
            continue
        answer_text = _CALCULATOR.sub("", str(answer)).strip()
        final = reference_answer(answer_text)
        solution = _CALCULATOR.sub("", str(record[source.solution_field] or "")).strip() if source.solution_field \
            else (answer_text if answer_text != final else "")
        groups = {name: str(record[name]) for name in ("level", "subject") if record.get(name) is not None}
        rows.append(question_record(f"{id_prefix}-{index:05d}", str(question), final, solution, **groups))
        if limit and len(rows) == limit:
            break
    if skipped:
        logger.warning("%s: skipped %d rows without a question or an answer", source.path, skipped)
    return rows


def load_eval_set(config: EvalSetConfig) -> list[dict]:
    """The second test set's rows: the first `num_questions`, in order."""
    return load_dataset_rows(config, "eval.second_set", config.num_questions, id_prefix=config.name)


def dataset_task(config: TaskConfig, seed: int) -> dict[str, list[dict]]:
    """train/test/seed splits of a `dataset` task. The seed set is the first `seed_size` training rows that carry a
    reference solution (the baseline trains on them)."""
    train = load_dataset_rows(config.train, "task.train", config.num_train, shuffle_seed=seed, id_prefix="train")
    test = load_dataset_rows(config.test, "task.test", config.num_test, id_prefix="test")
    if not train or not test:
        raise ConfigError(f"task.{'train' if not train else 'test'}: no rows with a question and an answer")
    seed_rows = [r for r in train if r["solution"]][: config.seed_size]
    if len(seed_rows) < config.seed_size:
        raise ConfigError(
            f"task.seed_size: {config.seed_size} asked, but only {len(seed_rows)} training rows of {config.train.path} "
            "carry a worked solution (set task.train.solution_field, or seed_size: 0 and train.baseline: false)"
        )
    return {"train": train, "test": test, "seed": seed_rows}


def read_system_prompt(config: TaskConfig) -> str | None:
    return Path(config.system_prompt_file).read_text().strip() if config.system_prompt_file else None


def build_prompt(question: str, system_prompt: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": question}]


def seed_examples(rows: list[dict], system_prompt: str | None) -> list[dict]:
    """Reference solutions as training records: the warm-up data and the baseline's data."""
    return [train_example(r["id"], build_prompt(r["question"], system_prompt), r["solution"]) for r in rows]
