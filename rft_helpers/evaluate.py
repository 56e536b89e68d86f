"""04_evaluate: greedy pass@1 on the test split; maj@k and unbiased pass@k from k sampled answers per question."""

from __future__ import annotations

from collections import Counter
from math import comb

from .data import build_prompt
from .rewards import are_equivalent, extract_answer
from .sampling import SamplingEngine, SamplingParams, encode_chat


def greedy_predictions(
    engine: SamplingEngine, rows: list[dict], system_prompt: str | None, max_new_tokens: int, progress: bool = False
) -> list[dict]:
    """One greedy answer per test question, with its extracted answer and whether it is correct."""
    prompts = [build_prompt(r["question"], system_prompt) for r in rows]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    outputs = engine.generate(prompts, params, progress=progress)
    extracted = [extract_answer(completion.text) for (completion,) in outputs]
    verdicts = are_equivalent(extracted, [row["answer"] for row in rows])
    return [
        {"id": row["id"], "question": row["question"], "answer": row["answer"], "completion": completion.text,
         "extracted_answer": answer, "correct": correct, **{field: row[field] for field in GROUP_FIELDS if field in row}}
        for row, (completion,), answer, correct in zip(rows, outputs, extracted, verdicts)
    ]


def sampled_predictions(
    engine: SamplingEngine, rows: list[dict], system_prompt: str | None, params: SamplingParams, progress: bool = False
) -> list[dict]:
    """`params.n` sampled answers per question: each extracted answer, whether it is right, and the majority's."""
    prompts = [build_prompt(r["question"], system_prompt) for r in rows]
    outputs = engine.generate(prompts, params, progress=progress)
    answers = [[extract_answer(c.text) for c in completions] for completions in outputs]
    flat = are_equivalent([a for row in answers for a in row], [r["answer"] for r in rows for _ in range(params.n)])
    preds = []
    for index, (row, row_answers) in enumerate(zip(rows, answers)):
        correct = flat[index * params.n : (index + 1) * params.n]
        majority = majority_vote(row_answers)
        preds.append({
            "id": row["id"], "answer": row["answer"], "answers": row_answers, "correct": correct,
            "majority": majority, "majority_correct": any(c for a, c in zip(row_answers, correct) if a == majority),
            **{field: row[field] for field in GROUP_FIELDS if field in row},
        })
    return preds


def sampled_summary(predictions: list[dict]) -> dict:
    """maj@k and unbiased pass@j for j = 1, 2, 4, ... up to k, over the questions."""
    if not predictions:
        return {}
    k = len(predictions[0]["correct"])
    ks = sorted({2**i for i in range(k.bit_length()) if 2**i <= k} | {k})
    summary = {f"maj@{k}": sum(p["majority_correct"] for p in predictions) / len(predictions)}
    for j in ks:
        summary[f"pass@{j}"] = sum(pass_at_k(k, sum(p["correct"]), j) for p in predictions) / len(predictions)
    return summary


GROUP_FIELDS = ("kind", "level", "subject")  # per-group accuracy when test rows carry them (MATH: level, subject)


def accuracy_summary(predictions: list[dict]) -> dict:
    """Accuracy, plus `by_<field>` accuracies for each of GROUP_FIELDS the predictions carry."""
    correct = sum(p["correct"] for p in predictions)
    summary = {"accuracy": correct / len(predictions) if predictions else 0.0, "n": len(predictions), "correct": correct}
    for field in GROUP_FIELDS:
        groups: dict[str, list[bool]] = {}
        for p in predictions:
            if field in p:
                groups.setdefault(str(p[field]), []).append(p["correct"])
        if groups:
            summary[f"by_{field}"] = {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(groups.items())}
    return summary


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


def solution_loss(model, tokenizer, rows: list[dict], system_prompt: str | None, batch_size: int = 16) -> float | None:
    """Mean per-token negative log-likelihood of the reference solutions, each after its prompt (chat template).

    Greedy accuracy of a small model on a hard second set is near zero before and after training, so it cannot
    show forgetting; this loss can: it rises when the model drifts away from the text it used to predict."""
    import torch

    rows = [r for r in rows if r.get("solution")]
    if not rows:
        return None
    prompts = [build_prompt(r["question"], system_prompt) for r in rows]
    prompt_ids = encode_chat(tokenizer, prompts)
    full_texts = [tokenizer.apply_chat_template(p + [{"role": "assistant", "content": r["solution"]}], tokenize=False)
                  for p, r in zip(prompts, rows)]
    full_ids = tokenizer(full_texts, add_special_tokens=False)["input_ids"]
    total_loss, total_tokens = 0.0, 0
    device = model.device
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = list(zip(prompt_ids[start : start + batch_size], full_ids[start : start + batch_size]))
            width = max(len(f) for _, f in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (prompt, full) in enumerate(batch):  # right padding; loss on the solution tokens only
                ids[row, : len(full)] = torch.tensor(full)
                mask[row, : len(full)] = 1
                labels[row, len(prompt) : len(full)] = torch.tensor(full[len(prompt) :])
            # Logits only where a solution token is predicted: the vocabulary projection of the prompt positions
            # would be most of the memory traffic and is not needed.
            first = min(len(prompt) for prompt, _ in batch) - 1
            positions = torch.arange(first, width - 1, device=device)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=positions).logits
            targets = labels[:, first + 1 :].to(device)
            losses = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total_loss += losses.item()
            total_tokens += int((targets != -100).sum())
    return total_loss / total_tokens if total_tokens else None
