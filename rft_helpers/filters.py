"""03_filter: score samples with a reward, then keep the good ones. Pure functions over lists of rows.

Every row gets `rewards` (name -> score), `extracted_answer`, `kept` and `reject_reason` (None when kept), so a
reader can see why each sample was dropped. The checks run in this order and the first that applies is recorded:
no_reward, low_reward, low_prm, too_long, truncated, wrong_script, too_easy, duplicate, near_duplicate,
max_per_question. With a PRM (`filter.prm`), each row also has `step_scores` and `rewards["prm"]`, the
aggregated one; a question's samples are then taken best first, by PRM + 10 x outcome reward as ms-swift ranks
them, so the cap per question keeps the best, and DPO pairs set the best against the worst.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict

from .config import FilterConfig
from .prm import aggregate
from .records import completion_text, pair_record, train_example
from .rewards import RewardFn, extract_answer, score_rows

PRM = "prm"  # the aggregated PRM score's name in `rewards`
OUTCOME_WEIGHT = 10.0  # ranking by PRM + 10 x outcome: a right answer always outranks a wrong one (ms-swift)


def score_samples(rows: list[dict], reward_fn: RewardFn, reward_name: str) -> list[dict]:
    """Each sample with its reward under `reward_name` (one batch call, as GRPO makes it) and its final answer."""
    scores = score_rows(rows, reward_fn, reward_name)
    return [
        row | {"rewards": {**row.get("rewards", {}), reward_name: score},
               "extracted_answer": extract_answer(completion_text(row["completion"]))}
        for row, score in zip(rows, scores)
    ]


def add_step_scores(rows: list[dict], step_scores: list[list[float]], aggregation: str) -> list[dict]:
    """Each row with its PRM step scores and their aggregate (rewards["prm"]; None without steps)."""
    return [row | {"step_scores": scores, "rewards": {**row["rewards"], PRM: aggregate(scores, aggregation)}}
            for row, scores in zip(rows, step_scores)]


def rank_score(row: dict, reward_name: str) -> float:
    """PRM + 10 x outcome reward: how good a sample is, best highest."""
    return (row["rewards"].get(PRM) or 0.0) + OUTCOME_WEIGHT * (row["rewards"].get(reward_name) or 0.0)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _shingles(text: str, n: int = 3) -> frozenset:
    words = text.lower().split()
    return frozenset(tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1)))


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def script_share(text: str, script: str) -> float:
    """The share of letters whose Unicode name starts with `script` (LATIN, CYRILLIC, CJK, ...); 1.0 without letters."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    return sum(unicodedata.name(c, "").startswith(script.upper()) for c in letters) / len(letters)


def apply_filters(rows: list[dict], config: FilterConfig) -> list[dict]:
    """Mark each scored row kept or not, in order (shortest first within a question with `prefer_shorter`); the
    first reason that applies is recorded. Rows come back in their original order."""
    seen: dict[str, set[str]] = defaultdict(set)
    kept_shingles: dict[str, list[frozenset]] = defaultdict(list)
    kept_per_question: Counter = Counter()
    too_easy = _too_easy_questions(rows, config) if config.drop_too_easy else set()
    order = range(len(rows))
    texts = [completion_text(row["completion"]) for row in rows]
    if config.prm or config.prefer_shorter:  # the best first (with a PRM), else concise ones: cheaper to train on
        order = sorted(order, key=lambda i: (rows[i]["id"], -rank_score(rows[i], config.reward) if config.prm else 0,
                                             len(texts[i]) if config.prefer_shorter else 0))
    decided: dict[int, dict] = {}
    for index in order:
        row, qid, text = rows[index], rows[index]["id"], texts[index]
        shingles = _shingles(text) if config.near_duplicate is not None else frozenset()
        score = row["rewards"].get(config.reward)
        reason = None
        if score is None:
            reason = "no_reward"
        elif score < config.min_reward:
            reason = "low_reward"
        elif config.prm and config.prm_threshold is not None and (row["rewards"].get(PRM) or 0.0) < config.prm_threshold:
            reason = "low_prm"
        elif config.max_completion_tokens is not None and row.get("completion_tokens", 0) > config.max_completion_tokens:
            reason = "too_long"
        elif config.drop_truncated and row.get("finish_reason") == "length":
            reason = "truncated"
        elif config.script is not None and script_share(text, config.script) < 0.95:
            reason = "wrong_script"
        elif qid in too_easy:
            reason = "too_easy"
        elif config.dedupe and _normalise(text) in seen[qid]:
            reason = "duplicate"
        elif config.near_duplicate is not None and any(
                _jaccard(shingles, other) >= config.near_duplicate for other in kept_shingles[qid]):
            reason = "near_duplicate"
        elif config.max_per_question is not None and kept_per_question[qid] >= config.max_per_question:
            reason = "max_per_question"
        if reason is None:
            seen[qid].add(_normalise(text))
            kept_shingles[qid].append(shingles)
            kept_per_question[qid] += 1
        decided[index] = row | {"kept": reason is None, "reject_reason": reason}
    return [decided[i] for i in range(len(rows))]


def _too_easy_questions(rows: list[dict], config: FilterConfig) -> set[str]:
    """Questions whose every sample reaches min_reward: the model already solves them."""
    passed: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        score = row["rewards"].get(config.reward)
        passed[row["id"]].append(score is not None and score >= config.min_reward)
    return {qid for qid, results in passed.items() if all(results)}


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


def process_summary(rows: list[dict], outcome_only: list[dict] | None = None) -> dict:
    """For samples whose steps were checked (generated tasks): the share of kept samples whose every step is
    right, and, against `outcome_only` (the same samples filtered without the PRM), how many of the process-correct
    samples the outcome filter would keep this filter also keeps. {} when nothing was checked."""
    def stats(decided: list[dict]) -> tuple[int, int]:
        kept = [r for r in decided if r["kept"] and r.get("process_correct") is not None]
        return len(kept), sum(r["process_correct"] for r in kept)

    if not any(r.get("process_correct") is not None for r in rows):
        return {}
    kept, right = stats(rows)
    summary = {"kept_process_accuracy": right / kept if kept else None, "kept_process_correct": right,
               "samples_process_correct": sum(bool(r.get("process_correct")) for r in rows)}
    if outcome_only is not None:
        orm_kept, orm_right = stats(outcome_only)
        summary |= {"outcome_only_kept_process_accuracy": orm_right / orm_kept if orm_kept else None,
                    "outcome_only_kept_process_correct": orm_right,
                    "process_correct_kept_share": right / orm_right if orm_right else None}
    return summary


def balance_score(rows: list[dict], config: FilterConfig, target_correct: int) -> float:
    """B-STaR's balance score (Zeng et al. 2024) of scored samples, averaged over questions:
    min(distinct / target_correct, 1) * distinct / selected, where `selected` are the samples the reward keeps and
    `distinct` the different solutions among them. The first factor rewards exploration (enough different good
    solutions), the second exploitation (few duplicates or wrong ones among the kept). 0 for unsolved questions."""
    selected: dict[str, list[str]] = defaultdict(list)
    questions = {r["id"] for r in rows}
    for row in rows:
        score = row["rewards"].get(config.reward)
        if score is not None and score >= config.min_reward:
            selected[row["id"]].append(_normalise(completion_text(row["completion"])))
    scores = [min(len(set(s)) / target_correct, 1.0) * len(set(s)) / len(s) for s in selected.values()]
    return sum(scores) / len(questions) if questions else 0.0


def build_train_set(rows: list[dict]) -> list[dict]:
    """Kept samples as training records (conversational prompt/completion)."""
    return [train_example(r["id"], r["prompt"], completion_text(r["completion"])) for r in rows if r["kept"]]


def build_pairs(rows: list[dict], pairs_per_question: int, reward_name: str | None = None) -> list[dict]:
    """DPO records (conversational prompt/chosen/rejected): per question, kept samples against different rejected
    ones (low_reward, or low_prm), up to `pairs_per_question` distinct pairs, each sample reused as little as
    possible. With PRM scores (`reward_name` given), the best kept samples (PRM + 10 x outcome) go first, each
    against the worst rejected ones."""
    chosen: dict[str, list[dict]] = defaultdict(list)
    rejected: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        if row["kept"]:
            chosen[row["id"]].append(row)
        elif row["reject_reason"] in ("low_reward", "low_prm"):
            rejected[row["id"]].setdefault(_normalise(completion_text(row["completion"])), row)
    pairs = []
    for qid, good in chosen.items():
        bad = list(rejected[qid].values())
        if not bad:
            continue
        if reward_name is not None:
            good = sorted(good, key=lambda r: -rank_score(r, reward_name))
            bad = sorted(bad, key=lambda r: rank_score(r, reward_name))
        # Pairs (i, j) in diagonals j - i = 0, 1, ...: the first min(len(good), len(bad)) pairs share no sample.
        combos = sorted(((i, j) for i in range(len(good)) for j in range(len(bad))),
                        key=lambda p: ((p[1] - p[0]) % len(bad), p[0]))
        for i, j in combos[:pairs_per_question]:
            pairs.append(pair_record(qid, good[i]["prompt"], good[i]["completion"], bad[j]["completion"]))
    return pairs
