"""PRM costs on this machine: Monte Carlo labelling (rollout tokens/s), PRM training (labelled samples/s) and PRM
scoring (steps/s, in float32 and in bfloat16: prm.dtype), on the demo's task and model after its warm-up.

    python bench/prm.py [--samples 1000] [--rollouts 4] [--score 4000]

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rft_helpers.prm import load_prm
from rft_helpers.prm.labels import monte_carlo_labels
from rft_helpers.prm.training import train_prm
from rft_helpers.recipes import load_config
from rft_helpers.records import completion_text
from rft_helpers.rewards import exact_answer
from rft_helpers.run import Run
from rft_helpers.sampling import SamplingParams, get_engine
from rft_helpers.stages import sample, train
from rft_helpers.steps import split_steps

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="samples whose steps are labelled")
    parser.add_argument("--rollouts", type=int, default=4, help="continuations per step prefix")
    parser.add_argument("--epochs", type=float, default=3.0, help="PRM training epochs")
    parser.add_argument("--score", type=int, default=4000, help="samples scored by the trained PRM")
    args = parser.parse_args()
    questions = -(-max(args.samples, args.score) // 8)
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(ROOT / "params" / "demo.yaml", ["iterations=1", f"sample.num_questions={questions}"])
        run = Run.create(config, Path(folder) / "run")
        train.run_stage(run, 0, run.config.stage_config("train", 0))  # the demo's warm-up: the policy that labels
        samples = sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)

        engine = get_engine("transformers", run.policy_model(1), batch_size=64)
        rows, rollouts = monte_carlo_labels(engine, samples[: args.samples], exact_answer, "exact_answer",
                                            SamplingParams(n=args.rollouts, temperature=0.7, max_new_tokens=64),
                                            "\n")
        engine.close()
        trained = train_prm(run.base_model, rows, Path(folder) / "prm", num_epochs=args.epochs, learning_rate=1e-3)

        scored = samples[: args.score]
        steps = [split_steps(completion_text(s["completion"])) for s in scored]
        score_seconds = {}
        for dtype in ("float32", "bfloat16"):  # prm.dtype
            prm = load_prm(Path(folder) / "prm", dtype=dtype, batch_size=256)
            start = time.perf_counter()
            prm.score([s["prompt"] for s in scored], steps)
            score_seconds[dtype] = time.perf_counter() - start
    print(json.dumps({
        "labelled_samples": rollouts["samples"], "prefixes": rollouts["prefixes"], "rollouts": rollouts["rollouts"],
        "rollout_tokens": rollouts["rollout_tokens"], "rollout_seconds": rollouts["rollout_seconds"],
        "rollout_tokens_per_s": rollouts["rollout_tokens_per_s"],
        "prm_train_examples_per_s": trained.summary["examples_per_s"], "prm_train_seconds": trained.summary["seconds"],
        "scored_steps": sum(map(len, steps)), "score_seconds": round(score_seconds["float32"], 2),
        "scoring_steps_per_s": round(sum(map(len, steps)) / score_seconds["float32"], 1),
        "scoring_steps_per_s_bfloat16": round(sum(map(len, steps)) / score_seconds["bfloat16"], 1),
    }))


if __name__ == "__main__":
    main()
