import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from rft_helpers.rewards import exact_answer, extract_answer, get_reward, is_equivalent


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3+4=7\nAnswer: 7", "7"),
        ("Answer: 3\nAnswer: 9", "9"),  # the last answer counts
        ("so \\boxed{12} is it", "12"),
        ("work\n#### 1,234", "1,234"),
        ("The answer is 42.", "42"),
        ("no final line", None),
        ("Answer: ", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "pred, ref, same",
    [("14", "14", True), ("14.0", "14", True), ("28/2", "14", True), ("1,234", "1234", True),
     ("1,5", "15", False), ("15", "14", False), (None, "1", False), ("x + 1", "x  +  1", True)],
)
def test_is_equivalent(pred, ref, same):
    assert is_equivalent(pred, ref) is same


def test_reward_contract_matches_grpo():
    """TRL's reward signature: completions (strings or chat messages), dataset columns as kwargs, None = no judge."""
    completions = ["1+1=2\nAnswer: 2", [{"role": "assistant", "content": "Answer: 3"}], "Answer: 5"]
    scores = exact_answer(completions=completions, answer=["2", "2", None], prompt=[[], [], []], extra="ignored")
    assert scores == [1.0, 0.0, None]


def test_reward_works_in_threads_and_pickles():
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: exact_answer(["Answer: 4"], answer=["4"]), range(4)))
    assert results == [[1.0]] * 4
    assert pickle.loads(pickle.dumps(exact_answer))(["Answer: 4"], answer=["4"]) == [1.0]


def test_reward_registry():
    assert get_reward("exact_answer") is exact_answer
    assert get_reward("rft_helpers.rewards.outcome.exact_answer") is exact_answer
    with pytest.raises(ValueError, match="filter.reward: unknown reward 'nope'.*exact_answer"):
        get_reward("nope")
