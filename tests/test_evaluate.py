import pytest

from rft_helpers.evaluate import accuracy_summary, majority_vote, pass_at_k


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(n=10, c=0, k=1) == 0.0
    assert pass_at_k(n=10, c=10, k=5) == 1.0
    assert pass_at_k(n=10, c=3, k=1) == pytest.approx(0.3)
    assert pass_at_k(n=4, c=1, k=2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(n=5, c=2, k=4) == 1.0  # fewer wrong samples than k


def test_majority_vote_ignores_missing_answers():
    assert majority_vote(["3", None, "4", "3", None, None]) == "3"
    assert majority_vote([None, None]) is None


def test_accuracy_summary():
    assert accuracy_summary([{"correct": True}, {"correct": False}]) == {"accuracy": 0.5, "n": 2, "correct": 1}
