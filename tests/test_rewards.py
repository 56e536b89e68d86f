import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from rft_helpers.exceptions import ConfigError
from rft_helpers.rewards import exact_answer, extract_answer, get_reward, is_equivalent, score_rows


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
    with pytest.raises(ConfigError, match="filter.reward: unknown reward 'nope'.*exact_answer"):
        get_reward("nope")
    with pytest.raises(ConfigError, match="eval.reward: unknown reward 'no_such_package.score'"):
        get_reward("no_such_package.score", "eval.reward")


def test_a_custom_reward_whose_import_fails_is_named_with_its_file_and_error(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text("import numpyy\n\ndef score(completions, **kwargs):\n    return [1.0]\n")
    (tmp_path / "good_rewards.py").write_text("def score(completions, **kwargs):\n    return [1.0] * len(completions)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        get_reward("my_rewards.score")
    message = str(err.value)
    assert message.startswith("filter.reward: 'my_rewards.score': importing my_rewards")
    assert str(tmp_path / "my_rewards.py") in message and "No module named 'numpyy'" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"good_rewards \(.*good_rewards.py\) has no function 'scor'"):
        get_reward("good_rewards.scor")
    assert get_reward("good_rewards.score")(["a", "b"]) == [1.0, 1.0]


def test_score_rows_passes_the_dataset_columns_and_checks_the_count():
    seen = {}

    def reward(completions, id, prompt, answer, **kwargs):
        seen.update(completions=completions, id=id, answer=answer)
        return [0.5] * len(completions)

    rows = [{"id": "q1", "prompt": [], "answer": "4", "completion": [{"role": "assistant", "content": "4"}]}]
    assert score_rows(rows, reward, "mine") == [0.5]
    assert seen == {"completions": [rows[0]["completion"]], "id": ["q1"], "answer": ["4"]}
    with pytest.raises(RuntimeError, match="reward short: returned 0 scores for 1 completions"):
        score_rows(rows, lambda completions, **kw: [], "short")
