"""05_evaluate: greedy pass@1 on the test split; maj@k and unbiased pass@k from k sampled answers per question.

Answers are judged by a reward (`eval.reward`, by default the filter's): correct means a score of 1 or more, so
a custom reward judges the test answers exactly as it judges the training samples.
"""

from __future__ import annotations

from math import comb

from .data import build_prompt
from .records import GROUP_FIELDS, assistant, group_fields
from .rewards import RewardFn, extract_answer, score_rows
from .rewards.voting import majority_votes
from .sampling import SamplingEngine, SamplingParams, encode_chat

CORRECT_AT = 1.0  # the reward an answer needs to count as correct


def judge(rows: list[dict], texts: list[str], reward_fn: RewardFn, reward_name: str) -> list[float | None]:
    """The reward of each answer text to its question (rows: test questions)."""
    answered = [{"id": row["id"], "prompt": row.get("prompt"), "answer": row["answer"], "completion": assistant(text)}
                for row, text in zip(rows, texts)]
    return score_rows(answered, reward_fn, reward_name)


def is_correct(score: float | None) -> bool:
    return score is not None and score >= CORRECT_AT


def greedy_predictions(engine: SamplingEngine, rows: list[dict], system_prompt: str | None, max_new_tokens: int,
                       reward_fn: RewardFn, reward_name: str, progress: bool = False) -> list[dict]:
    """One greedy answer per test question, its extracted answer, its reward and whether it is correct."""
    prompts = [build_prompt(r["question"], system_prompt) for r in rows]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    texts = [completion.text for (completion,) in engine.generate(prompts, params, progress=progress)]
    return judged_predictions(rows, prompts, texts, reward_fn, reward_name)


def judged_predictions(rows: list[dict], prompts: list, texts: list[str], reward_fn: RewardFn,
                       reward_name: str) -> list[dict]:
    """One prediction record per test question from its answer text: the extracted answer, its reward and
    whether it is correct (greedy answers, or the ones a search chose)."""
    scores = judge([row | {"prompt": prompt} for row, prompt in zip(rows, prompts)], texts, reward_fn, reward_name)
    return [
        {"id": row["id"], "question": row["question"], "answer": row["answer"], "completion": assistant(text),
         "extracted_answer": extract_answer(text), "reward": score, "correct": is_correct(score), **group_fields(row)}
        for row, text, score in zip(rows, texts, scores)
    ]


def sampled_predictions(engine: SamplingEngine, rows: list[dict], system_prompt: str | None, params: SamplingParams,
                        reward_fn: RewardFn, reward_name: str, progress: bool = False) -> list[dict]:
    """`params.n` sampled answers per question: each extracted answer, whether it is right, and the majority's."""
    prompts = [build_prompt(r["question"], system_prompt) for r in rows]
    outputs = engine.generate(prompts, params, progress=progress)
    answers = [[extract_answer(c.text) for c in completions] for completions in outputs]
    repeated = [row | {"prompt": prompt} for row, prompt in zip(rows, prompts) for _ in range(params.n)]
    flat = [is_correct(s) for s in judge(repeated, [c.text for o in outputs for c in o], reward_fn, reward_name)]
    majorities = majority_votes(answers)
    preds = []
    for index, (row, row_answers, majority) in enumerate(zip(rows, answers, majorities)):
        correct = flat[index * params.n : (index + 1) * params.n]
        preds.append({
            "id": row["id"], "answer": row["answer"], "answers": row_answers, "correct": correct,
            "majority": majority, "majority_correct": majority is not None and correct[row_answers.index(majority)],
            **group_fields(row),
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


def process_accuracy(predictions: list[dict]) -> dict:
    """Of the answers judged correct, the share whose every step is right too (where the steps were checked):
    an answer can be right by luck, after a wrong step. {} when nothing was checked."""
    checked = [p for p in predictions if p["correct"] and p.get("process_correct") is not None]
    if not any(p.get("process_correct") is not None for p in predictions):
        return {}
    return {"process_accuracy": sum(p["process_correct"] for p in checked) / len(checked) if checked else None,
            "process_correct": sum(p["process_correct"] for p in checked)}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, "Evaluating LLMs Trained on Code").

    >>> round(pass_at_k(n=4, c=1, k=2), 3)
    0.5
    """
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common extracted answer, equivalent forms voting together (see `majority_votes`)."""
    return majority_votes([answers])[0]


def solution_loss(model, tokenizer, rows: list[dict], system_prompt: str | None, batch_size: int = 16) -> float | None:
    """Mean per-token negative log-likelihood of the reference solutions, each after its prompt (chat template).

    Greedy accuracy of a small model on a hard second set is near zero before and after training, so it cannot
    show forgetting; this loss can: it rises when the model drifts away from the text it used to predict.
    Rows are batched by length (little padding) and the vocabulary projection runs only where a solution token
    is predicted: on SmolLM2 and 100 GSM8K solutions, 40 s -> 22 s."""
    import torch

    rows = [r for r in rows if r.get("solution")]
    if not rows:
        return None
    prompts = [build_prompt(r["question"], system_prompt) for r in rows]
    prompt_ids = encode_chat(tokenizer, prompts)
    full_texts = [tokenizer.apply_chat_template(p + [{"role": "assistant", "content": r["solution"]}], tokenize=False)
                  for p, r in zip(prompts, rows)]
    full_ids = tokenizer(full_texts, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(rows)), key=lambda i: len(full_ids[i]))
    total_loss, total_tokens = 0.0, 0
    device = model.device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(full_ids[i]) for i in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # right padding; loss on the solution tokens only
                full, prompt = full_ids[i], prompt_ids[i]
                ids[row, : len(full)] = torch.tensor(full)
                mask[row, : len(full)] = 1
                labels[row, len(prompt) : len(full)] = torch.tensor(full[len(prompt) :])
            hidden = model.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            targets = labels[:, 1:].to(device)
            predicted = targets != -100  # positions whose next token is a solution token
            logits = model.get_output_embeddings()(hidden[:, :-1][predicted])
            total_loss += torch.nn.functional.cross_entropy(logits.float(), targets[predicted], reduction="sum").item()
            total_tokens += int(predicted.sum())
    return total_loss / total_tokens if total_tokens else None


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """The area under the ROC curve: the chance a random right item scores above a random wrong one (ties count
    half); None when either class is missing."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    ranks = _ranks(scores)
    return (sum(rank for rank, label in zip(ranks, labels) if label) - positives * (positives + 1) / 2) / (
        positives * negatives)


def _ranks(values: list[float]) -> list[float]:
    """1-based ranks, tied values sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def roc_curve(scores: list[float], labels: list[bool]) -> tuple[list[float], list[float]]:
    """False and true positive rates at every threshold, from the highest score down (for a plot)."""
    positives, negatives = sum(labels), len(labels) - sum(labels)
    fpr, tpr, fp, tp = [0.0], [0.0], 0, 0
    pairs = sorted(zip(scores, labels), key=lambda pair: -pair[0])
    for k, (score, label) in enumerate(pairs):
        tp, fp = tp + label, fp + (not label)
        if k + 1 == len(pairs) or pairs[k + 1][0] != score:
            fpr.append(fp / negatives if negatives else 0.0)
            tpr.append(tp / positives if positives else 0.0)
    return fpr, tpr


def auroc_from_curve(fpr: list[float], tpr: list[float]) -> float:
    """The area under a ROC curve given as points (trapezoids)."""
    return sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
