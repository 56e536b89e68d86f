"""02_filter: score samples with a reward, then keep the good ones. Pure functions over lists of rows.

Every row gets `rewards` (name -> score), `extracted_answer`, `kept` and `reject_reason` (None when kept), so a
reader can see why each sample was dropped: no_reward, low_reward, duplicate, max_per_question.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from .config import FilterConfig
from .data import sft_example
from .rewards import RewardFn, extract_answer


def score_samples(rows: list[dict], reward_fn: RewardFn, reward_name: str) -> list[dict]:
    """Call the reward once on the whole batch, with the dataset columns as keyword arguments (as GRPO does)."""
    columns = {key: [r.get(key) for r in rows] for key in ("id", "prompt", "answer")}
    scores = reward_fn(completions=[r["completion"] for r in rows], **columns) if rows else []
    if len(scores) != len(rows):
        raise RuntimeError(f"reward {reward_name}: returned {len(scores)} scores for {len(rows)} samples")
    return [
        row | {"rewards": {**row.get("rewards", {}), reward_name: score}, "extracted_answer": extract_answer(row["completion"])}
        for row, score in zip(rows, scores)
    ]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def apply_filters(rows: list[dict], config: FilterConfig) -> list[dict]:
    """Mark each scored row kept or not, in order (shortest first within a question with `prefer_shorter`); the
    first reason that applies is recorded. Rows come back in their original order."""
    seen: dict[str, set[str]] = defaultdict(set)
    kept_per_question: Counter = Counter()
    order = range(len(rows))
    if config.prefer_shorter:  # concise correct answers are cheaper to sample, train on and read
        order = sorted(order, key=lambda i: (rows[i]["id"], len(rows[i]["completion"])))
    decided: dict[int, dict] = {}
    for index in order:
        row = rows[index]
        score = row["rewards"].get(config.reward)
        reason = None
        if score is None:
            reason = "no_reward"
        elif score < config.min_reward:
            reason = "low_reward"
        elif config.dedupe and _normalise(row["completion"]) in seen[row["id"]]:
            reason = "duplicate"
        elif config.max_per_question is not None and kept_per_question[row["id"]] >= config.max_per_question:
            reason = "max_per_question"
        if reason is None:
            seen[row["id"]].add(_normalise(row["completion"]))
            kept_per_question[row["id"]] += 1
        decided[index] = row | {"kept": reason is None, "reject_reason": reason}
    return [decided[i] for i in range(len(rows))]


def filter_summary(rows: list[dict], reward_name: str) -> dict:
    """Counts for metrics.json: kept ratio, reasons, questions with at least one correct / kept sample."""
    questions = {r["id"] for r in rows}
    solved = {r["id"] for r in rows if (r["rewards"].get(reward_name) or 0) > 0}
    kept = [r for r in rows if r["kept"]]
    return {
        "samples": len(rows),
        "kept": len(kept),
        "kept_ratio": len(kept) / len(rows) if rows else 0.0,
        "mean_reward": sum(r["rewards"].get(reward_name) or 0 for r in rows) / len(rows) if rows else 0.0,
        "questions": len(questions),
        "questions_solved": len(solved),
        "questions_kept": len({r["id"] for r in kept}),
        "reject_reasons": dict(Counter(r["reject_reason"] for r in rows if not r["kept"])),
    }


def build_train_set(rows: list[dict]) -> list[dict]:
    """Kept samples as training records (conversational prompt/completion)."""
    return [sft_example(r["id"], r["prompt"], r["completion"]) for r in rows if r["kept"]]
