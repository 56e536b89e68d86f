from rft_helpers.config import FilterConfig
from rft_helpers.filters import apply_filters, build_train_set, filter_summary, score_samples
from rft_helpers.rewards import exact_answer

PROMPT = [{"role": "user", "content": "2+2=?"}]


def rows(*completions, qid="q1", answer="4"):
    return [{"id": qid, "prompt": PROMPT, "completion": c, "answer": answer} for c in completions]


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
