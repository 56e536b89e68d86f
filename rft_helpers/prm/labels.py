"""Monte Carlo step labels from the policy's own rollouts (Math-Shepherd, Wang et al. 2024).

From each step's prefix (the prompt, then the sample's steps up to that one) the policy writes `rollouts`
continuations; the step's soft label is the share of trajectories through it that reach the right answer, its hard
label whether any does. The last step's label is the sample's own outcome. All prefixes go to the engine in one
call, each with its `n` continuations sharing the prefix's encoding, and a prefix that several samples of a
question share (their first steps often agree) is rolled out once.

The shares pool every trajectory of the policy that passes through a step: the rollouts from its own prefix, those
from earlier prefixes that went on to write the same step, and the iteration's samples of the same question that
begin with the same steps (`pool`). Each is a continuation of the policy from that step, so the estimate stays
unbiased while counting far more than `rollouts` trajectories where the policy's answers agree. The rows are TRL's
stepwise format (`prompt`, `completions`: the steps, `labels`) with the shares (`success`) beside them
(records.StepLabels).

Relative labels (`kind="relative"`) ask what the step itself did rather than whether the policy still finishes
from it: the share after the step against the share before it (min(1, Q_j / Q_{j-1}), with Q_0 from the bare
prompt's trajectories), averaged with how often the policy itself writes that step from the previous prefix (the
share of the other trajectories through that prefix that go on with this step). A step that a weak policy cannot
finish from, yet is the step it usually writes, keeps a high label; a lucky answer after a wrong step does not
raise it. Where the previous prefix never reaches the answer the ratio says nothing and the label is the agreement
alone; the last step's label is its outcome, which is exact.

Pooling identical steps (`pooled_targets`, prm.pool_identical_steps) goes one step further than the tree: a step
written word for word in many questions (`8+7=15`) gets one target, the mean of its targets wherever it appears.
One question's estimate carries that question's level (how often the policy solves it at all) and its rollouts'
noise; a classifier trained on it learns the level from the question rather than the step. Where a step is right
or wrong whatever comes before it (an arithmetic line), the mean over questions keeps what the step itself does.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

from ..records import Messages, assistant, completion_text
from ..rewards import RewardFn, score_rows
from ..sampling import SamplingEngine, SamplingParams
from ..steps import join_steps, normalise_step, split_steps, step_key


def prefix_prompt(prompt: Messages, steps: list[str], separator: str) -> Messages:
    """The prompt with the answer begun: the steps so far and the separator, for the policy to continue (the bare
    prompt for no steps)."""
    if not steps:
        return prompt
    return prompt + [{"role": "assistant", "content": join_steps(steps, separator) + separator}]


def relative_targets(success: list[float], agreement: list[float | None],
                     prompt_success: float | None) -> list[float]:
    """Each step's relative label: mean(min(1, Q_j / Q_{j-1}), agreement_j), the agreement alone where
    Q_{j-1} = 0, and the outcome itself at the last step.

    >>> relative_targets([0.25, 1.0], [1.0, 0.5], prompt_success=0.5)  # step 1 halves the chance, step 2 finishes
    [0.75, 1.0]
    >>> relative_targets([0.0, 0.0, 0.0], [0.5, 0.25, 1.0], prompt_success=0.0)  # a question it never solves
    [0.5, 0.25, 0.0]
    """
    if prompt_success is None or None in agreement:
        raise ValueError("relative labels need the rollouts of the bare prompt (monte_carlo_labels kind='relative')")
    before, targets = prompt_success, []
    for share, agree in zip(success, agreement):
        targets.append((min(1.0, share / before) + agree) / 2 if before > 0 else agree)
        before = share
    targets[-1] = success[-1]
    return targets


def step_targets(row: dict, kind: str) -> list[float]:
    """What the PRM learns for each step of a StepLabels row: the share (soft), 0/1 (hard) or the relative label."""
    if kind == "soft":
        return row["success"]
    if kind == "relative":
        return relative_targets(row["success"], row["agreement"], row["prompt_success"])
    return [float(label) for label in row["labels"]]


def training_targets(row: dict, kind: str) -> list[float]:
    """The targets 02_prm wrote in the row (`targets`), else the row's own (step_targets)."""
    return row["targets"] if row.get("targets") is not None else step_targets(row, kind)


def pooled_targets(rows: list[dict], kind: str, pool: list[dict] | None = None) -> list[list[float]]:
    """Each row's step targets (step_targets), every step but the last replaced by the mean target of the steps
    written the same way (whitespace aside) at any place but the last in `pool` (default: `rows`), whatever
    question or prefix they follow. The last step keeps its own target, the sample's outcome: an answer is right
    for one question only.

    >>> rows = [{"completions": ["2+2=4", "Answer: 4"], "success": [0.2, 0.0]},
    ...         {"completions": ["2+2=4", "Answer: 14"], "success": [0.8, 1.0]}]
    >>> pooled_targets(rows, "soft")
    [[0.5, 0.0], [0.5, 1.0]]
    """
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for row in rows if pool is None else pool:
        for step, target in zip(row["completions"][:-1], step_targets(row, kind)):
            total = totals[normalise_step(step)]
            total[0] += target
            total[1] += 1
    pooled = []
    for row in rows:
        own = step_targets(row, kind)
        middle = [totals[key][0] / totals[key][1] if (key := normalise_step(step)) in totals else target
                  for step, target in zip(row["completions"][:-1], own)]
        pooled.append(middle + own[len(middle):])
    return pooled


def monte_carlo_labels(engine: SamplingEngine, samples: list[dict], reward_fn: RewardFn, reward_name: str,
                       params: SamplingParams, separator: str, kind: str = "soft", pool: list[dict] = (),
                       progress: bool = False) -> tuple[list[dict], dict]:
    """Step labels for each sample (records.StepLabels rows, without `heldout`), and the rollouts' numbers.
    `kind`: soft, hard or relative (the last also rolls out from each question's bare prompt). `pool`: more samples
    of the same policy (the iteration's others), counted where they pass through a labelled step, not labelled."""
    steps = [split_steps(completion_text(s["completion"]), separator) for s in samples]
    first = 0 if kind == "relative" else 1  # relative labels need Q_0: the bare prompt is a prefix too
    prefixes: dict[tuple, tuple[int, int]] = {}  # a question's distinct prefix -> (sample, steps) that opens it
    for s, sample_steps in enumerate(steps):
        for j in range(first, len(sample_steps)):
            prefixes.setdefault(step_key(samples[s]["id"], sample_steps[:j]), (s, j))
    prompts = [prefix_prompt(samples[s]["prompt"], steps[s][:j], separator) for s, j in prefixes.values()]
    start = time.perf_counter()
    outputs = engine.generate(prompts, params, progress=progress) if prompts else []
    seconds = time.perf_counter() - start
    rollouts = [{"id": samples[s]["id"], "prompt": samples[s]["prompt"], "answer": samples[s]["answer"],
                 "completion": assistant((prompt[-1]["content"] if j else "") + c.text)}
                for (s, j), prompt, completions in zip(prefixes.values(), prompts, outputs) for c in completions]
    labelled = {(s["id"], s.get("sample_index", 0)) for s in samples}
    others = [p for p in pool if (p["id"], p.get("sample_index", 0)) not in labelled]
    trajectories = samples + others + rollouts
    visits, successes = Counter(), Counter()
    outcomes = []
    for row, score in zip(trajectories, score_rows(trajectories, reward_fn, reward_name)):
        path, reached = split_steps(completion_text(row["completion"]), separator), score is not None and score >= 1
        outcomes.append(reached)
        for j in range(len(path) + 1):
            key = step_key(row["id"], path[:j])
            visits[key] += 1
            successes[key] += reached
    rows = []
    for sample, sample_steps, reached in zip(samples, steps, outcomes):
        if not sample_steps:
            continue
        nodes = [step_key(sample["id"], sample_steps[:j]) for j in range(len(sample_steps) + 1)]
        shares = [successes[node] / visits[node] for node in nodes[1:-1]] + [float(reached)]
        # how often the policy writes this step where it stood before it: the other trajectories through the prefix
        agreement = [(visits[after] - 1) / (visits[before] - 1) if visits[before] > 1 else None
                     for before, after in zip(nodes, nodes[1:])]
        row = {"id": sample["id"], "sample_index": sample.get("sample_index", 0), "prompt": sample["prompt"],
               "completions": sample_steps, "labels": [share > 0 if kind == "hard" else share >= 0.5 for share in shares],
               "success": shares, "agreement": agreement,
               "prompt_success": successes[nodes[0]] / visits[nodes[0]] if kind == "relative" else None}
        if kind == "relative":
            row["labels"] = [target >= 0.5 for target in step_targets(row, kind)]
        rows.append(row)
    tokens = sum(c.completion_tokens for completions in outputs for c in completions)
    return rows, {"samples": len(rows), "steps": sum(len(r["completions"]) for r in rows), "prefixes": len(prompts),
                  "prefixes_shared": sum(len(s) - first for s in steps if s) - len(prompts),
                  "pooled_samples": len(others), "rollouts": len(rollouts), "rollout_tokens": tokens,
                  "rollout_seconds": round(seconds, 2),
                  "rollout_tokens_per_s": round(tokens / seconds, 1) if seconds else None}
