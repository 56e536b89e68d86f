"""Steps: one splitting function for every PRM, filter and report; the process check of the generated tasks."""

import pytest

from rft_helpers.config import TaskConfig
from rft_helpers.data import generate_task
from rft_helpers.rewards import extract_answer
from rft_helpers.steps import process_correct, split_steps, step_truth


@pytest.mark.parametrize("text, separator, expected", [
    ("9+3=12\n5+6+1=12\nAnswer: 122", "\n", ["9+3=12", "5+6+1=12", "Answer: 122"]),
    ("9+3=12\n\n5+6+1=12\n", "\n", ["9+3=12", "5+6+1=12"]),  # empty lines are no steps
    ("First, x = 2.\nSo y = 4.\n\nThus $\\boxed{4}$.", "\n\n", ["First, x = 2.\nSo y = 4.", "Thus $\\boxed{4}$."]),
    ("", "\n", []),
])
def test_split_steps(text, separator, expected):
    assert split_steps(text, separator) == expected


def test_step_truth_compares_each_step_with_the_references_at_the_same_place():
    reference = ["9+3=12", "5+6+1=12", "Answer: 122"]
    assert step_truth(["9+3=12", "5+6+1=12", "Answer: 122"], reference) == [True, True, True]
    assert step_truth(["9+3=12", "5+6=11", "Answer: 122"], reference) == [True, False, True]  # right by luck
    assert step_truth(["9+3=12", "5+6+1=12", "Answer: 122", "more"], reference)[-1] is False
    assert process_correct(reference, reference) and not process_correct(reference[:2], reference)
    assert not process_correct(["9+3=12", "5+6=11", "Answer: 122"], reference)


def test_chains_are_solved_left_to_right_one_line_per_operation():
    task = generate_task(TaskConfig(name="chain", num_train=50, num_test=10, seed_size=5), seed=0)
    for row in task["train"]:
        lines = split_steps(row["solution"])
        value = None
        for line in lines[:-1]:
            left, result = line.split("=")
            for op in "+-*":
                if op in left:
                    a, b = left.split(op)
                    assert value is None or int(a) == value
                    assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == int(result)
                    assert 0 <= int(result) <= 99
            value = int(result)
        assert 2 <= len(lines) - 1 <= 3 and extract_answer(row["solution"]) == row["answer"] == str(value)
    assert generate_task(TaskConfig(name="chain", num_train=50, num_test=10, seed_size=5), seed=0) == task
