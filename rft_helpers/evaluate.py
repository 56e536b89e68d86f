"""04_evaluate: greedy pass@1 on the test split, plus the estimators for sampled evaluation."""

from __future__ import annotations

from collections import Counter
from math import comb

from .data import build_prompt
from .rewards import extract_answer, is_equivalent
from .sampling import SamplingEngine, SamplingParams


def greedy_predictions(
    engine: SamplingEngine, rows: list[dict], system_prompt: str | None, max_new_tokens: int, progress: bool = False
) -> list[dict]:
    """One greedy answer per test question, with its extracted answer and whether it is correct."""
    prompts = [build_prompt(r["question"], system_prompt) for r in rows]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    outputs = engine.generate(prompts, params, progress=progress)
    preds = []
    for row, (completion,) in zip(rows, outputs):
        extracted = extract_answer(completion.text)
        preds.append({
            "id": row["id"], "question": row["question"], "answer": row["answer"], "completion": completion.text,
            "extracted_answer": extracted, "correct": is_equivalent(extracted, row["answer"]),
        })
    return preds


def accuracy_summary(predictions: list[dict]) -> dict:
    correct = sum(p["correct"] for p in predictions)
    return {"accuracy": correct / len(predictions) if predictions else 0.0, "n": len(predictions), "correct": correct}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, "Evaluating LLMs Trained on Code").

    >>> round(pass_at_k(n=4, c=1, k=2), 3)
    0.5
    """
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common extracted answer (ties: the first seen); None answers do not vote."""
    votes = Counter(a for a in answers if a is not None)
    return votes.most_common(1)[0][0] if votes else None
