"""Monte Carlo step labels from the policy's own rollouts (Math-Shepherd, Wang et al. 2024).

From each step's prefix (the prompt, then the sample's steps up to that one) the policy writes `rollouts`
continuations; the step's soft label is the share of them that reach the right answer, its hard label whether any
does. The last step's label is the sample's own outcome. All prefixes go to the engine in one call, each with its
`n` continuations sharing the prefix's encoding. The rows are TRL's stepwise format (`prompt`, `completions`: the
steps, `labels`) with the shares (`success`) beside them (records.StepLabels).
"""

from __future__ import annotations

import time

from ..records import Messages, assistant, completion_text
from ..rewards import RewardFn, score_rows
from ..sampling import SamplingEngine, SamplingParams
from ..steps import join_steps, split_steps


def prefix_prompt(prompt: Messages, steps: list[str], separator: str) -> Messages:
    """The prompt with the answer begun: the steps so far and the separator, for the policy to continue."""
    return prompt + [{"role": "assistant", "content": join_steps(steps, separator) + separator}]


def monte_carlo_labels(engine: SamplingEngine, samples: list[dict], reward_fn: RewardFn, reward_name: str,
                       params: SamplingParams, separator: str, hard: bool = False,
                       progress: bool = False) -> tuple[list[dict], dict]:
    """Step labels for each sample (records.StepLabels rows, without `heldout`), and the rollouts' numbers."""
    steps = [split_steps(completion_text(s["completion"]), separator) for s in samples]
    prefixes = [(s, i) for s, sample_steps in enumerate(steps) for i in range(len(sample_steps) - 1)]
    prompts = [prefix_prompt(samples[s]["prompt"], steps[s][: i + 1], separator) for s, i in prefixes]
    start = time.perf_counter()
    outputs = engine.generate(prompts, params, progress=progress) if prompts else []
    seconds = time.perf_counter() - start
    finished = [{"id": samples[s]["id"], "prompt": samples[s]["prompt"], "answer": samples[s]["answer"],
                 "completion": assistant(prompt[-1]["content"] + c.text)}
                for (s, _), prompt, completions in zip(prefixes, prompts, outputs) for c in completions]
    scores = score_rows(finished + samples, reward_fn, reward_name)  # the rollouts, then the samples themselves
    success = [[0.0] * len(sample_steps) for sample_steps in steps]
    for k, (s, i) in enumerate(prefixes):
        reached = scores[k * params.n:(k + 1) * params.n]
        success[s][i] = sum(score is not None and score >= 1 for score in reached) / params.n
    for s, score in enumerate(scores[len(finished):]):
        if steps[s]:
            success[s][-1] = float(score is not None and score >= 1)
    rows = [{"id": sample["id"], "sample_index": sample.get("sample_index", 0), "prompt": sample["prompt"],
             "completions": sample_steps, "labels": [share > 0 if hard else share >= 0.5 for share in shares],
             "success": shares}
            for sample, sample_steps, shares in zip(samples, steps, success) if sample_steps]
    tokens = sum(c.completion_tokens for completions in outputs for c in completions)
    return rows, {"samples": len(rows), "steps": sum(len(r["completions"]) for r in rows), "prefixes": len(prompts),
                  "rollouts": len(finished), "rollout_tokens": tokens, "rollout_seconds": round(seconds, 2),
                  "rollout_tokens_per_s": round(tokens / seconds, 1) if seconds else None}
