import pytest

from rft_helpers.config import FilterConfig
from rft_helpers.filters import apply_filters, balance_score, build_pairs, build_train_set, filter_summary, score_samples
from rft_helpers.records import assistant
from rft_helpers.rewards import exact_answer

PROMPT = [{"role": "user", "content": "2+2=?"}]


def rows(*completions, qid="q1", answer="4"):
    return [{"id": qid, "prompt": PROMPT, "completion": assistant(c), "answer": answer} for c in completions]


def test_scores_filters_and_records_why():
    samples = rows("2+2=4\nAnswer: 4", "2+2=4\nAnswer: 4", "2+2=5\nAnswer: 5", "2*2=4\nAnswer: 4",
                   "2+2=4\n\nAnswer: 4", "no answer") + rows("Answer: 9", qid="q2", answer=None)
    scored = apply_filters(score_samples(samples, exact_answer, "exact_answer"), FilterConfig(max_per_question=2))
    assert [r["rewards"]["exact_answer"] for r in scored] == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, None]
    assert [r["reject_reason"] for r in scored] == [
        None, "duplicate", "low_reward", None, "duplicate", "low_reward", "no_reward"]
    assert [r["extracted_answer"] for r in scored][:3] == ["4", "4", "5"]
    summary = filter_summary(scored, "exact_answer")
    assert summary["kept"] == 2 and summary["samples"] == 7
    assert summary["questions_solved"] == 1 and summary["reject_reasons"] == {
        "duplicate": 2, "low_reward": 2, "no_reward": 1}


def test_max_per_question_and_no_dedupe():
    scored = apply_filters(score_samples(rows(*["Answer: 4"] * 5), exact_answer, "exact_answer"),
                           FilterConfig(dedupe=False, max_per_question=3))
    assert [r["kept"] for r in scored] == [True, True, True, False, False]
    assert scored[-1]["reject_reason"] == "max_per_question"


def test_prefer_shorter_keeps_the_shortest_correct_samples_in_the_original_order():
    samples = rows("So 2 + 2 makes 4, and the answer is 4", "4", "2+2=4", "5") + rows("It is 6", "6", qid="q2", answer="6")
    scored = apply_filters(score_samples(samples, exact_answer, "exact_answer"),
                           FilterConfig(max_per_question=1, prefer_shorter=True))
    assert [r["completion"] for r in scored] == [s["completion"] for s in samples]  # order unchanged
    assert [r["reject_reason"] for r in scored] == ["max_per_question", None, "max_per_question", "low_reward",
                                                    "max_per_question", None]


def test_train_set_is_chat_prompt_completion():
    scored = apply_filters(score_samples(rows("Answer: 4", "Answer: 3"), exact_answer, "exact_answer"), FilterConfig())
    assert build_train_set(scored) == [
        {"id": "q1", "prompt": PROMPT, "completion": [{"role": "assistant", "content": "Answer: 4"}]}]


def _scored(question: str, completions: list[str], correct: list[bool]) -> list[dict]:
    return [{"id": question, "completion": assistant(c), "rewards": {"exact_answer": float(ok)}}
            for c, ok in zip(completions, correct)]


def test_balance_score_rewards_distinct_correct_samples_and_penalises_duplicates():
    config = FilterConfig()
    # q1: 4 distinct correct of 4 (target 4) -> 1.0; q2: 2 correct, the same text -> min(1/4, 1) * 1/2 = 0.125;
    # q3: nothing correct -> 0
    rows = (_scored("q1", ["a", "b", "c", "d"], [True] * 4) + _scored("q2", ["x", "x ", "y", "z"], [True, True, False, False])
            + _scored("q3", ["p", "q"], [False, False]))
    assert balance_score(rows, config, target_correct=4) == pytest.approx((1.0 + 0.125 + 0.0) / 3)
    assert balance_score(rows, config, target_correct=1) == pytest.approx((1.0 + 0.5) / 3)
    assert balance_score([], config, 4) == 0.0


def test_length_truncation_script_and_too_easy_filters_record_their_reason():
    samples = [
        {"id": "q1", "completion": assistant("Answer: 4"), "completion_tokens": 3, "finish_reason": "stop"},
        {"id": "q1", "completion": assistant("Two and two, counted slowly... Answer: 4"), "completion_tokens": 40, "finish_reason": "stop"},
        {"id": "q1", "completion": assistant("2+2 is 4 so Answer: 4"), "completion_tokens": 9, "finish_reason": "length"},
        {"id": "q1", "completion": assistant("二加二等于四 Answer: 4"), "completion_tokens": 9, "finish_reason": "stop"},
        {"id": "q1", "completion": assistant("Answer: 5"), "completion_tokens": 3, "finish_reason": "stop"},
        {"id": "q2", "completion": assistant("Answer: 6"), "completion_tokens": 3, "finish_reason": "stop"},
        {"id": "q2", "completion": assistant("Six. Answer: 6"), "completion_tokens": 5, "finish_reason": "stop"},
    ]
    answers = {"q1": "4", "q2": "6"}
    scored = score_samples([s | {"prompt": PROMPT, "answer": answers[s["id"]]} for s in samples], exact_answer,
                           "exact_answer")
    config = FilterConfig(max_completion_tokens=20, drop_truncated=True, script="latin", drop_too_easy=True)
    assert [r["reject_reason"] for r in apply_filters(scored, config)] == [
        None, "too_long", "truncated", "wrong_script", "low_reward", "too_easy", "too_easy"]
    assert [r["reject_reason"] for r in apply_filters(scored, FilterConfig())] == [None] * 4 + ["low_reward", None, None]


def test_near_duplicates_are_dropped_within_a_question_only():
    first = "We add the tens: 40 plus 30 is 70. Then the ones: 5 plus 2 is 7. So the answer is 77"
    reworded = first.replace("So the answer is 77", "Hence the answer is 77")
    different = "75 + 2 = 77 and 77 + 0 = 77 so the answer is 77"
    samples = rows(first, reworded, different, answer="77") + rows(reworded, qid="q2", answer="77")
    scored = score_samples(samples, exact_answer, "exact_answer")
    decided = apply_filters(scored, FilterConfig(near_duplicate=0.7))
    assert [r["reject_reason"] for r in decided] == [None, "near_duplicate", None, None]
    assert [r["reject_reason"] for r in apply_filters(scored, FilterConfig())] == [None] * 4


def test_dpo_pairs_match_kept_samples_with_distinct_wrong_ones():
    samples = rows("Answer: 4", "So Answer: 4", "Answer: 5", "Answer: 5", "Answer: 3") + rows("Answer: 6", qid="q2", answer="6")
    scored = apply_filters(score_samples(samples, exact_answer, "exact_answer"), FilterConfig())
    pairs = build_pairs(scored, pairs_per_question=3)
    # q1: 2 kept x 2 distinct wrong (the repeated "Answer: 5" counts once); q2 has no wrong sample: no pair
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("Answer: 4", "Answer: 5"), ("So Answer: 4", "Answer: 3"), ("Answer: 4", "Answer: 3")]
    assert all(p["id"] == "q1" and p["prompt"] == PROMPT for p in pairs)
    assert len(build_pairs(scored, pairs_per_question=10)) == 4  # every distinct pair, no more


def _with_prm(rows_, step_scores):
    from rft_helpers.filters import add_step_scores

    return add_step_scores(score_samples(rows_, exact_answer, "exact_answer"), step_scores, "min")


def test_low_prm_drops_a_right_answer_with_a_doubtful_step_and_the_threshold_can_change_per_iteration():
    from rft_helpers.recipes import load_config

    samples = rows("2+2=4\nAnswer: 4", "2+2=5\nAnswer: 4", "2+2=5\nAnswer: 5")
    scored = _with_prm(samples, [[0.9, 0.95], [0.3, 0.9], [0.2, 0.1]])
    assert [r["rewards"]["prm"] for r in scored] == [0.9, 0.3, 0.1] and scored[1]["step_scores"] == [0.3, 0.9]
    decided = apply_filters(scored, FilterConfig(prm=True, prm_threshold=0.7))
    assert [r["reject_reason"] for r in decided] == [None, "low_prm", "low_reward"]  # low_reward comes first
    assert [r["kept"] for r in apply_filters(scored, FilterConfig(prm=True))] == [True, True, False]  # no threshold
    config = load_config(None, ["prm.model=trained", "filter.prm=true", "filter.prm_threshold=[0.7, 0.8, 0.9]"])
    assert [config.stage_config("filter", i).prm_threshold for i in (1, 2, 3, 4)] == [0.7, 0.8, 0.9, 0.9]


def test_with_a_prm_the_cap_per_question_keeps_the_best_and_pairs_set_best_against_worst():
    samples = rows("a. Answer: 4", "b. Answer: 4", "c. Answer: 4", "d. Answer: 5", "e. Answer: 6")
    scored = _with_prm(samples, [[0.5], [0.9], [0.7], [0.8], [0.1]])
    decided = apply_filters(scored, FilterConfig(prm=True, max_per_question=2))
    assert [r["kept"] for r in decided] == [False, True, True, False, False]  # 0.9 and 0.7 of the right ones
    assert [r["completion"][0]["content"] for r in decided] == [s["completion"][0]["content"] for s in samples]
    pairs = build_pairs(decided, pairs_per_question=2, reward_name="exact_answer")
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("b. Answer: 4", "e. Answer: 6"), ("c. Answer: 4", "d. Answer: 5")]  # best against worst first


def test_process_summary_compares_the_kept_with_what_the_outcome_alone_keeps():
    from rft_helpers.filters import process_summary

    decided = [{"kept": True, "process_correct": True}, {"kept": True, "process_correct": False},
               {"kept": False, "process_correct": True}, {"kept": False, "process_correct": None}]
    outcome_only = [{"kept": True, "process_correct": True}, {"kept": True, "process_correct": False},
                    {"kept": True, "process_correct": True}, {"kept": False, "process_correct": None}]
    summary = process_summary(decided, outcome_only)
    assert summary["kept_process_accuracy"] == 0.5 and summary["outcome_only_kept_process_accuracy"] == 2 / 3
    assert summary["process_correct_kept_share"] == 0.5 and summary["samples_process_correct"] == 2
    assert process_summary([{"kept": True}]) == {}  # nothing checked (a dataset task)
