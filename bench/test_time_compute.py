"""Test-time compute on the demo: accuracy, generated tokens and seconds of each answer strategy at N = 4, 16, 64,
on the demo's test questions, with the warm-up policy and the PRMs of params/demo_prm.yaml's first iteration.

    python bench/test_time_compute.py [--run outputs/bench_ttc] [--questions 100] [--ns 4 16 64] [--plot PNG]

It first runs `rft run params/demo_prm.yaml --iterations 1` into --run (once; a finished run is reused), for the
policy (iteration 0's warm-up) and the PRM trained from its rollouts. A second PRM trained on the same steps with
the checker's labels (`truth`, a measurement the toolkit never trains on) shows what a good PRM would give.
Prints one JSON object as its last line: {"monte_carlo_prm": {strategy: {N: {accuracy, tokens, seconds}}},
"checker_prm": {...}, "beam_over_best_of_n_wall_at_16": ...}, also written to --out (RUN/test_time_compute.json),
which the report notebook plots (06_report's `test_time_compute` parameter).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rft_helpers.data import build_prompt, load_split
from rft_helpers.io import read_jsonl
from rft_helpers.prm import load_prm
from rft_helpers.prm.training import train_prm
from rft_helpers.records import assistant
from rft_helpers.rewards import exact_answer
from rft_helpers.run import Run
from rft_helpers.sampling import get_engine
from rft_helpers.search import SearchSettings, run_search

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "mcts")


def prepared_run(folder: Path) -> Run:
    if not (folder / "iter_01" / "prm").exists():
        subprocess.run([sys.executable, "-m", "rft_helpers.cli", "run", str(ROOT / "params" / "demo_prm.yaml"),
                        "--iterations", "1", "--output-dir", str(folder)], check=True)
    return Run(folder)


def checker_prm(run: Run) -> Path:
    """The same steps with their true labels: what a PRM could learn from perfect labels."""
    path = run.dir / "checker_prm"
    if not path.exists():
        rows = [r | {"labels": r["truth"]} for r in read_jsonl(run.iter_dir(1) / "prm_labels.jsonl")
                if not r["heldout"] and r["truth"]]
        train_prm(run.base_model, rows, path, labels="hard", learning_rate=1e-3, num_epochs=10)
    return path


def measure(engine, prm, questions: list[dict], system_prompt: str | None, strategy: str, n: int,
            aggregation: str) -> dict:
    prompts = [build_prompt(q["question"], system_prompt) for q in questions]
    # MCTS spends about N steps' tokens per question with N simulations (N whole answers for the others)
    settings = SearchSettings(n=n, temperature=0.7, max_new_tokens=64, beam_width=4, max_steps=12,
                              aggregation=aggregation, mcts_simulations=n, mcts_width=4, seed=0)
    engine.batch_size = max(1, 4096 // n)  # about 4,096 sequences per generate call
    results, compute = run_search(strategy, engine, prm, prompts, settings)
    texts = [r.answer.text if r.answer else "" for r in results]
    scores = exact_answer([assistant(t) for t in texts], answer=[q["answer"] for q in questions])
    return {"accuracy": round(sum(s is not None and s >= 1 for s in scores) / len(questions), 4),
            "tokens": compute.tokens, "seconds": round(compute.seconds, 1), "prm_calls": compute.prm_calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "outputs" / "bench_ttc")
    parser.add_argument("--questions", type=int, default=100, help="test questions")
    parser.add_argument("--ns", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--aggregation", default="min", help="how step scores rank candidates (the filter's min: "
                                                              "these PRMs score answer lines near 0.5, so last is weak)")
    parser.add_argument("--out", type=Path, help="the JSON object, for 06_report (default: RUN/test_time_compute.json)")
    parser.add_argument("--plot", type=Path, help="also save accuracy against tokens per strategy (PNG) here")
    args = parser.parse_args()
    run = prepared_run(args.run)
    questions = load_split(run.data_dir, "test", args.questions)
    engine = get_engine("transformers", run.policy_model(1), batch_size=256)
    greedy = measure_greedy(engine, questions, run.system_prompt)
    report: dict = {"questions": len(questions), "policy": run.policy_model(1), "aggregation": args.aggregation,
                    "greedy": greedy}
    for name, path in (("monte_carlo_prm", run.prm_checkpoint(1)), ("checker_prm", checker_prm(run))):
        prm = load_prm(path, batch_size=256)
        report[name] = {}
        for strategy in args.strategies:
            if strategy == "majority" and name != "monte_carlo_prm":
                continue  # no PRM: measured once
            report[name][strategy] = {}
            for n in args.ns:
                report[name][strategy][str(n)] = measure(engine, prm, questions, run.system_prompt, strategy, n,
                                                              args.aggregation)
                print(name, strategy, n, report[name][strategy][str(n)], flush=True)
    at16 = report["monte_carlo_prm"]
    if "beam_search" in at16 and "best_of_n" in at16 and "16" in at16["beam_search"]:
        report["beam_over_best_of_n_wall_at_16"] = round(at16["beam_search"]["16"]["seconds"]
                                                         / max(at16["best_of_n"]["16"]["seconds"], 1e-9), 2)
    (args.out or args.run / "test_time_compute.json").write_text(json.dumps(report) + "\n")
    print(json.dumps(report))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from rft_helpers.report import plot_test_time_compute_result

        plot_test_time_compute_result(report).figure.savefig(args.plot, dpi=110)


def measure_greedy(engine, questions: list[dict], system_prompt: str | None) -> dict:
    from rft_helpers.sampling import SamplingParams

    prompts = [build_prompt(q["question"], system_prompt) for q in questions]
    before = engine.usage["completion_tokens"]
    texts = [c.text for (c,) in engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=64))]
    scores = exact_answer([assistant(t) for t in texts], answer=[q["answer"] for q in questions])
    return {"accuracy": round(sum(s is not None and s >= 1 for s in scores) / len(questions), 4),
            "tokens": engine.usage["completion_tokens"] - before}


if __name__ == "__main__":
    main()
