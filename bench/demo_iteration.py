"""Time one RFT iteration of the demo recipe, stage by stage (papermill kernels included, as `make demo` runs).

    python bench/demo_iteration.py [--params params/demo.yaml] [--set key=value ...]

Runs iteration 0 (warm-up + evaluation) and iteration 1 in a temporary folder. The last line printed is one JSON
object: {"stage_seconds": {stage: s}, "total_seconds": s, "iteration_0_seconds": s, "accuracy": {...}}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rft_helpers.recipes import load_config
from rft_helpers.pipeline import STAGES, run_pipeline

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params" / "demo.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = load_config(args.params, args.set + ["iterations=1"])
    with tempfile.TemporaryDirectory(prefix="rft-bench-") as tmp:
        start = time.perf_counter()
        run = run_pipeline(config, Path(tmp) / "run")
        wall = time.perf_counter() - start
        stages = run.state()["stages"]
        stage_seconds = {name: stages[f"iter_01/{name}"]["seconds"] for name in STAGES}
        m0, m1 = run.metrics(0), run.metrics(1)
    print(json.dumps({
        "stage_seconds": stage_seconds,
        "total_seconds": round(sum(stage_seconds.values()), 2),
        "iteration_0_seconds": round(sum(m0["timing_s"].values()), 2),
        "wall_seconds_with_report": round(wall, 2),
        "accuracy": {"iter_00": m0["eval"]["accuracy"], "iter_01": m1["eval"]["accuracy"],
                     "baseline_iter_01": m1.get("baseline_eval", {}).get("accuracy")},
    }))


if __name__ == "__main__":
    main()
