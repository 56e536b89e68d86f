"""The record formats: the builders make rows of their class, every completion is chat messages, and a row that
does not fit its file's class is one line naming the file, the row and the field."""

import pytest

from rft_helpers.exceptions import DataError
from rft_helpers.io import write_jsonl
from rft_helpers.records import (Pair, Question, Sample, Scored, TrainExample, assistant, check_rows, completion_text,
                                 pair_record, question_record, read_records, sample_record, train_example)

PROMPT = [{"role": "user", "content": "2+2=?"}]


def test_builders_make_rows_of_their_record_class():
    question = question_record("q1", "2+2=?", "4", "2+2=4\nAnswer: 4", kind="+ 1-digit")
    sample = sample_record(question, 0, PROMPT, "Answer: 4", 5, 3, "stop", {"temperature": 0.7})
    check_rows([question], Question, "data/train.jsonl")
    check_rows([sample], Sample, "samples.jsonl")
    check_rows([sample | {"rewards": {"exact_answer": 1.0}, "extracted_answer": "4", "kept": True,
                          "reject_reason": None}], Scored, "scored.jsonl")
    check_rows([train_example("q1", PROMPT, "Answer: 4")], TrainExample, "train.jsonl")
    check_rows([pair_record("q1", PROMPT, assistant("Answer: 4"), assistant("Answer: 5"))], Pair, "pairs.jsonl")
    assert sample["completion"] == [{"role": "assistant", "content": "Answer: 4"}]  # one format in every file
    assert completion_text(sample["completion"]) == "Answer: 4" == completion_text("Answer: 4")


def test_a_row_that_does_not_fit_names_the_file_row_and_field(tmp_path):
    good = sample_record({"id": "q1", "answer": "4"}, 0, PROMPT, "Answer: 4", 5, 3, "stop", {})
    path = tmp_path / "samples.jsonl"
    write_jsonl(path, [good, good | {"completion": "Answer: 4"}])  # a plain string where messages belong
    with pytest.raises(DataError) as err:
        read_records(path, Sample)
    assert str(err.value).startswith(f"{path}: row 2: completion: Input should be a valid list")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"row 1: surprise: Extra inputs are not permitted"):
        check_rows([good | {"surprise": 1}], Sample, "samples.jsonl")
