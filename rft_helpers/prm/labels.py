"""Monte Carlo step labels from the policy's own rollouts (Math-Shepherd, Wang et al. 2024).

From each step's prefix (the prompt, then the sample's steps up to that one) the policy writes `rollouts`
continuations; the step's soft label is the share of them that reach the right answer, its hard label whether any
does. The last step's label is the sample's own outcome. All prefixes go to the engine in one call, each with its
`n` continuations sharing the prefix's encoding. The rows are TRL's stepwise format (`prompt`, `completions`: the
steps, `labels`) with the shares (`success`) beside them (records.StepLabels).

Relative labels (`kind="relative"`) ask what the step itself did rather than whether the policy still finishes
from it: the share after the step against the share before it (min(1, Q_j / Q_{j-1}), with Q_0 from rollouts of
the bare prompt), averaged with how often the policy itself writes that step from the previous prefix (the first
step of those rollouts). A step that a weak policy cannot finish from, yet is the step it usually writes, keeps a
high label; a lucky answer after a wrong step does not raise it. Where the previous prefix never reaches the answer
the ratio says nothing: the step gets no target (the PRM is not trained at it) and its boolean label is the
agreement's.
"""

from __future__ import annotations

import time

from ..records import Messages, assistant, completion_text
from ..rewards import RewardFn, score_rows
from ..sampling import SamplingEngine, SamplingParams
from ..steps import join_steps, same_step, split_steps


def prefix_prompt(prompt: Messages, steps: list[str], separator: str) -> Messages:
    """The prompt with the answer begun: the steps so far and the separator, for the policy to continue."""
    return prompt + [{"role": "assistant", "content": join_steps(steps, separator) + separator}]


def relative_targets(success: list[float], agreement: list[float | None],
                     prompt_success: float | None) -> list[float | None]:
    """Each step's relative label: mean(min(1, Q_j / Q_{j-1}), agreement_j); None where Q_{j-1} = 0.

    >>> relative_targets([0.25, 1.0], [1.0, 0.5], prompt_success=0.5)  # step 1 halves the chance, step 2 finishes
    [0.75, 0.75]
    """
    if prompt_success is None or None in agreement:
        raise ValueError("relative labels need the rollouts of the bare prompt (monte_carlo_labels kind='relative')")
    before, targets = prompt_success, []
    for share, agree in zip(success, agreement):
        targets.append((min(1.0, share / before) + agree) / 2 if before > 0 else None)
        before = share
    return targets


def step_targets(row: dict, kind: str) -> list[float | None]:
    """What the PRM learns for each step of a StepLabels row: the share (soft), 0/1 (hard) or the relative label
    (None: no target at that step)."""
    if kind == "soft":
        return row["success"]
    if kind == "relative":
        return relative_targets(row["success"], row["agreement"], row["prompt_success"])
    return [float(label) for label in row["labels"]]


def monte_carlo_labels(engine: SamplingEngine, samples: list[dict], reward_fn: RewardFn, reward_name: str,
                       params: SamplingParams, separator: str, kind: str = "soft",
                       progress: bool = False) -> tuple[list[dict], dict]:
    """Step labels for each sample (records.StepLabels rows, without `heldout`), and the rollouts' numbers.
    `kind`: soft, hard or relative (the last also rolls out from each question's bare prompt)."""
    steps = [split_steps(completion_text(s["completion"]), separator) for s in samples]
    prefixes = [(s, i) for s, sample_steps in enumerate(steps) for i in range(len(sample_steps) - 1)]
    prompts = [prefix_prompt(samples[s]["prompt"], steps[s][: i + 1], separator) for s, i in prefixes]
    if kind == "relative":  # each question's bare prompt too, once (prefix -1): Q_0 and the first steps written
        opened = set()
        for s, sample in enumerate(samples):
            if steps[s] and sample["id"] not in opened:
                opened.add(sample["id"])
                prefixes.append((s, -1))
                prompts.append(sample["prompt"])
    start = time.perf_counter()
    outputs = engine.generate(prompts, params, progress=progress) if prompts else []
    seconds = time.perf_counter() - start
    finished = [{"id": samples[s]["id"], "prompt": samples[s]["prompt"], "answer": samples[s]["answer"],
                 "completion": assistant((prompt[-1]["content"] if i >= 0 else "") + c.text)}
                for (s, i), prompt, completions in zip(prefixes, prompts, outputs) for c in completions]
    scores = score_rows(finished + samples, reward_fn, reward_name)  # the rollouts, then the samples themselves
    success = [[0.0] * len(sample_steps) for sample_steps in steps]
    next_steps = [[None] * len(sample_steps) for sample_steps in steps]  # what the policy wrote in each step's place
    prompt_success, opening_steps = {}, {}
    for k, ((s, i), completions) in enumerate(zip(prefixes, outputs)):
        reached = scores[k * params.n:(k + 1) * params.n]
        share = sum(score is not None and score >= 1 for score in reached) / params.n
        written = [(split_steps(c.text, separator) or [""])[0] for c in completions]
        if i >= 0:
            success[s][i], next_steps[s][i + 1] = share, written
        else:
            prompt_success[samples[s]["id"]], opening_steps[samples[s]["id"]] = share, written
    for s, score in enumerate(scores[len(finished):]):
        if steps[s]:
            success[s][-1] = float(score is not None and score >= 1)
            next_steps[s][0] = opening_steps.get(samples[s]["id"])
    rows = []
    for sample, sample_steps, shares, written in zip(samples, steps, success, next_steps):
        if not sample_steps:
            continue
        agreement = [None if w is None else sum(same_step(x, step) for x in w) / len(w)
                     for step, w in zip(sample_steps, written)]
        row = {"id": sample["id"], "sample_index": sample.get("sample_index", 0), "prompt": sample["prompt"],
               "completions": sample_steps, "labels": [share > 0 if kind == "hard" else share >= 0.5 for share in shares],
               "success": shares, "agreement": agreement, "prompt_success": prompt_success.get(sample["id"])}
        if kind == "relative":
            row["labels"] = [(agree if target is None else target) >= 0.5
                             for target, agree in zip(step_targets(row, kind), agreement)]
        rows.append(row)
    tokens = sum(c.completion_tokens for completions in outputs for c in completions)
    return rows, {"samples": len(rows), "steps": sum(len(r["completions"]) for r in rows), "prefixes": len(prompts),
                  "rollouts": len(finished), "rollout_tokens": tokens, "rollout_seconds": round(seconds, 2),
                  "rollout_tokens_per_s": round(tokens / seconds, 1) if seconds else None}
