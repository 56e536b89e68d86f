"""SFT (full), LoRA, DPO and GRPO on the demo task, with the same sample budget: accuracy per iteration and wall time.

Each mode runs the demo recipe (`params/demo.yaml`: warm-up, then 3 iterations) into outputs/modes-<mode>/, with
`--questions` questions x 8 samples per iteration; GRPO draws the same number of completions inside its trainer
(one optimizer step per 32). The baseline is off: the modes are compared with each other. Learning rates are
each mode's best in a sweep on this task, unless `--set` overrides them (a sweep: `--modes dpo --set
train.learning_rate=5e-5 --tag lr5e-5` runs into outputs/modes-dpo-lr5e-5/). Prints a table and, last, one JSON
line.
Usage: python bench/training_modes.py [--questions 500] [--modes sft lora dpo grpo] [--set KEY=VALUE ...] [--tag T]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rft_helpers.recipes import load_config
from rft_helpers.pipeline import run_pipeline
from rft_helpers.report import compare_runs

ROOT = Path(__file__).resolve().parent.parent
# The best learning rate of each mode in the sweep on this task (README, "Training modes"); the demo recipe's
# 1e-3 suits its 1500 questions per iteration, and overshoots on 500.
MODES = {
    "sft": ["train.learning_rate=0.0003"],
    "lora": ["train.method=lora", "train.learning_rate=0.005"],  # adapters move less per step: a higher rate
    "dpo": ["train.algorithm=dpo", "train.learning_rate=0.00002", "train.beta=0.1", "train.dpo_sft_weight=1.0"],
    "grpo": ["train.algorithm=grpo", "train.learning_rate=0.00003", "train.beta=0.0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500, help="training questions sampled per iteration")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides after the mode's own")
    parser.add_argument("--tag", default="", help="suffix of the run folders, for a sweep")
    parser.add_argument("--output-root", default=str(ROOT / "outputs"))
    args = parser.parse_args()

    run_dirs = []
    for mode in args.modes:
        name = f"modes-{mode}" + (f"-{args.tag}" if args.tag else "")
        config = load_config(ROOT / "params" / "demo.yaml", [
            f"run_name={name}", f"sample.num_questions={args.questions}", "train.baseline=false", *MODES[mode],
            *args.set])
        run_dir = Path(args.output_root) / name
        run_pipeline(config, run_dir, log=lambda message: print(f"[{mode}] {message}", flush=True))
        run_dirs.append(run_dir)
    table = compare_runs(run_dirs)
    print(table.to_string(index=False))
    print(json.dumps({"questions_per_iteration": args.questions, "runs": table.to_dict(orient="records")}))


if __name__ == "__main__":
    main()
