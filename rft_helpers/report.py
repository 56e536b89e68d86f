"""Tables and plots the notebooks show. Each function takes rows or a Run and returns a DataFrame or an Axes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import read_jsonl
from .records import GROUP_FIELDS, completion_text
from .run import Run
from .steps import split_steps


def _short(text: str | list[dict], width: int = 80) -> str:
    text = completion_text(text).replace("\n", " | ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _question(row: dict) -> str:
    return next((m["content"] for m in reversed(row["prompt"]) if m["role"] == "user"), "")


def samples_table(rows: list[dict], k: int = 8, per_question: int | None = None) -> pd.DataFrame:
    """k samples (at most `per_question` of each question): question, completion, reference answer and, once
    scored, reward and verdict."""
    shown: dict[str, int] = {}
    picked = []
    for row in rows:
        if len(picked) == k:
            break
        if per_question is None or shown.get(row["id"], 0) < per_question:
            shown[row["id"]] = shown.get(row["id"], 0) + 1
            picked.append(row)
    table = []
    for row in picked:
        entry = {"id": row["id"], "question": _question(row), "completion": _short(row["completion"]),
                 "reference": row["answer"]}
        if "kept" in row:
            entry |= {"extracted": row.get("extracted_answer"), "rewards": row["rewards"],
                      "kept": row["kept"], "reject_reason": row["reject_reason"]}
        table.append(entry)
    return pd.DataFrame(table)


def kept_and_rejected(scored: list[dict], k: int = 4) -> pd.DataFrame:
    """k kept samples and k rejected ones, side by side in one table."""
    kept = [r for r in scored if r["kept"]][:k]
    rejected = [r for r in scored if not r["kept"]][:k]
    return samples_table(kept + rejected, k=2 * k)


def predictions_table(predictions: list[dict], k: int = 5) -> pd.DataFrame:
    """k right and k wrong greedy answers."""
    right = [p for p in predictions if p["correct"]][:k]
    wrong = [p for p in predictions if not p["correct"]][:k]
    return pd.DataFrame([
        {"question": p["question"], "completion": _short(p["completion"]), "extracted": p["extracted_answer"],
         "reference": p["answer"], "correct": p["correct"]}
        for p in right + wrong
    ])


def plot_completion_lengths(rows: list[dict], ax=None):
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3))[1]
    ax.hist([r["completion_tokens"] for r in rows], bins=30)
    ax.set(xlabel="completion tokens", ylabel="samples", title="Completion lengths")
    return ax


def plot_solve_rate(scored: list[dict], reward: str, ax=None):
    """Per question: the fraction of its samples that earned the reward (RFT learns from questions in (0, 1])."""
    import matplotlib.pyplot as plt

    frame = pd.DataFrame({"id": [r["id"] for r in scored], "score": [r["rewards"].get(reward) or 0 for r in scored]})
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    ax.hist(frame.groupby("id")["score"].mean(), bins=20)
    ax.set(xlabel="fraction of samples correct", ylabel="questions", title="Solve rate per question")
    return ax


def plot_loss(losses: list[float], rewards: list[float] | None = None, ax=None):
    """The training loss per step; with GRPO, also the mean reward of each step's samples (right axis)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3))[1]
    ax.plot(range(1, len(losses) + 1), losses, label="loss")
    ax.set(xlabel="optimizer step", ylabel="loss", title="Training loss" + (" and reward" if rewards else ""))
    if rewards:
        right = ax.twinx()
        right.plot(range(1, len(rewards) + 1), rewards, color="tab:green", label="mean reward")
        right.set_ylabel("mean reward of the step's samples")
    return ax


def step_scores_table(rows: list[dict], k: int = 6, width: int = 24):
    """k rows with step scores (scored samples with a PRM, or held-out PRM labels), one column per step, each
    cell the step and its score, coloured from red (0) to green (1); the process check's verdict beside them. An
    empty table when no row has step scores."""
    picked = [r for r in rows if r.get("step_scores")][:k]
    if not picked:
        return pd.DataFrame()
    steps = [r.get("completions") or split_steps(completion_text(r["completion"])) for r in picked]
    most = max(len(s) for s in steps)
    table = pd.DataFrame([{**{f"step {i + 1}": f"{_short(step, width)} ({score:.2f})"
                              for i, (step, score) in enumerate(zip(row_steps, r["step_scores"]))},
                           "steps right": _truth_mark(r)} for r, row_steps in zip(picked, steps)])
    scores = pd.DataFrame([r["step_scores"] + [None] * (most - len(r["step_scores"])) for r in picked],
                          columns=[f"step {i + 1}" for i in range(most)])

    def colour(column):
        return [f"background-color: {_score_colour(v)}" if v is not None and v == v else "" for v in scores[column.name]]

    return table.style.apply(colour, subset=list(scores.columns))


def _score_colour(score: float) -> str:
    return f"rgba({round(220 * (1 - score))}, {round(180 * score)}, 60, 0.35)"


def _truth_mark(row: dict) -> str:
    truth = row.get("truth")
    if truth is not None:
        return "".join("✓" if t else "✗" for t in truth)
    return {True: "all", False: "not all", None: ""}[row.get("process_correct")]


def plot_label_distribution(rows: list[dict], ax=None):
    """The rollout labels (share of a step's rollouts that reach the right answer), split by the truth where it
    is known: wrong steps should sit left, right ones right."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3))[1]
    shares = [(share, truth) for r in rows for share, truth in zip(r["success"], r.get("truth") or [None] * len(r["success"]))]
    bins = [i / 10 for i in range(11)]
    if any(t is not None for _, t in shares):
        ax.hist([[s for s, t in shares if t], [s for s, t in shares if t is False]], bins=bins, stacked=True,
                label=["right steps", "wrong steps"], color=["tab:green", "tab:red"])
        ax.legend()
    else:
        ax.hist([s for s, _ in shares], bins=bins)
    ax.set(xlabel="share of the step's rollouts that reach the right answer", ylabel="steps",
           title="Monte Carlo step labels")
    return ax


def plot_roc(curves: dict, ax=None):
    """ROC curves of the PRM's step scores (name -> (false positive rates, true positive rates))."""
    import matplotlib.pyplot as plt

    from .evaluate import auroc_from_curve

    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=f"vs {name.replace('_', ' ')} (AUROC {auroc_from_curve(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="PRM step scores, held-out samples")
    ax.legend(loc="lower right")
    return ax


def plot_test_time_compute(results: dict, title: str = "test-time compute", ax=None):
    """Accuracy against generated tokens per strategy ({strategy: {N: {"accuracy", "tokens"}}}, as
    bench/test_time_compute.py prints): the strategy above the others at equal tokens wins."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for strategy, by_n in results.items():
        points = sorted((v["tokens"], v["accuracy"], n) for n, v in by_n.items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=strategy.replace("_", " "))
        for tokens, accuracy, n in points:
            ax.annotate(f"N={n}", (tokens, accuracy), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set(xscale="log", xlabel="generated tokens (all candidates)", ylabel="accuracy", title=title)
    ax.legend(fontsize=8)
    return ax


def search_summary(run: Run) -> pd.DataFrame:
    """Per iteration, the sample and evaluate strategies and what their searches spent (tokens, PRM calls)."""
    rows = []
    for iteration in range(run.config.iterations + 1):
        m = run.metrics(iteration)
        sampling, evaluation = m.get("sampling", {}), m.get("eval", {})
        rows.append({"iteration": iteration, "sample_strategy": sampling.get("strategy"),
                     "sample_tokens": sampled_tokens(m),
                     "sample_prm_calls": sampling.get("search", {}).get("prm_calls"),
                     "eval_strategy": evaluation.get("strategy"), "accuracy": evaluation.get("accuracy"),
                     "eval_tokens": evaluation.get("search", {}).get("tokens"),
                     "eval_prm_calls": evaluation.get("search", {}).get("prm_calls")})
    return pd.DataFrame(rows)


def run_summary(run: Run) -> pd.DataFrame:
    """One row per finished iteration: accuracy (RFT and baseline), kept ratio, sample counts, seconds."""
    rows = []
    for iteration in range(run.config.iterations + 1):
        m = run.metrics(iteration)
        if "eval" not in m:
            continue
        rows.append({
            "iteration": iteration,
            "algorithm": m.get("train", {}).get("mode"),
            "sequences_per_step": m.get("train", {}).get("sequences_per_step"),  # batch x accumulation x processes
            "accuracy": m["eval"]["accuracy"],
            "baseline_accuracy": m.get("baseline_eval", {}).get("accuracy"),
            "temperature": m.get("sampling", {}).get("temperature"),
            "samples": m.get("sampling", {}).get("samples") or m.get("train", {}).get("samples_drawn"),
            "kept": m.get("filter", {}).get("kept"),
            "kept_ratio": m.get("filter", {}).get("kept_ratio"),
            "questions_solved": m.get("filter", {}).get("questions_solved"),
            "kept_process_accuracy": m.get("filter", {}).get("kept_process_accuracy"),
            "process_accuracy": m["eval"].get("process_accuracy"),
            "prm_step_auroc": m.get("prm", {}).get("step_auroc"),
            "prm_label_agreement": m.get("prm", {}).get("label_agreement"),
            "train_steps": m.get("train", {}).get("steps"),
            "seconds": round(sum(m.get("timing_s", {}).values()), 1),
            **{key: value for key, value in m["eval"].items() if key.startswith(("maj@", "pass@"))},
        })
    return pd.DataFrame(rows)


def plot_accuracy(summary: pd.DataFrame, ax=None):
    """RFT and the plain-SFT baseline on one plot: the comparison the report exists for."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    ax.plot(summary["iteration"], summary["accuracy"], marker="o", label="RFT")
    for column in [c for c in summary.columns if c.startswith("maj@") or (c.startswith("pass@") and c != "pass@1")]:
        ax.plot(summary["iteration"], summary[column], marker=".", linestyle=":", label=f"RFT {column} (sampled)")
    if summary["baseline_accuracy"].notna().any():
        ax.plot(summary["iteration"], summary["baseline_accuracy"], marker="s", linestyle="--",
                label="baseline: SFT on seed set, same steps")
    ax.set(xlabel="iteration", ylabel="test accuracy (greedy pass@1)", title="Accuracy per iteration", ylim=(0, 1))
    ax.set_xticks(summary["iteration"])
    ax.legend()
    return ax


def plot_process(summary: pd.DataFrame, ax=None):
    """Where the steps can be checked (generated tasks): the share of kept samples whose every step is right, the
    share of right test answers whose every step is right, and the PRM's step AUROC, per iteration. None when the
    run has none of them."""
    import matplotlib.pyplot as plt

    columns = {"kept_process_accuracy": "kept samples with every step right",
               "process_accuracy": "right test answers with every step right",
               "prm_step_auroc": "PRM step AUROC (held-out)"}
    present = [c for c in columns if c in summary and summary[c].notna().any()]
    if not present:
        return None
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for column in present:
        data = summary[summary[column].notna()]
        ax.plot(data["iteration"], data[column], marker="o", label=columns[column])
    ax.set(xlabel="iteration", ylabel="share", title="Steps, not just answers", ylim=(0, 1.02))
    ax.set_xticks(summary["iteration"])
    ax.legend(loc="lower right")
    return ax


def plot_kept(summary: pd.DataFrame, ax=None):
    import matplotlib.pyplot as plt

    data = summary[(summary["iteration"] > 0) & summary["kept_ratio"].notna()]  # GRPO iterations keep nothing
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    ax.bar(data["iteration"], data["kept_ratio"])
    ax.set(xlabel="iteration", ylabel="kept / sampled", title="Kept ratio")
    ax.set_xticks(data["iteration"])
    return ax


def answers_by_iteration(run: Run, k: int = 6, width: int = 40) -> pd.DataFrame:
    """The same k test questions answered by each iteration's model (✓/✗ and the start of the answer), so a reader
    sees the answers change."""
    columns: dict[str, list] = {}
    for iteration in range(run.config.iterations + 1):
        path = run.iter_dir(iteration) / "predictions.jsonl"
        if not path.exists():
            continue
        predictions = read_jsonl(path)[:k]
        columns.setdefault("question", [p["question"] for p in predictions])
        columns.setdefault("reference", [p["answer"] for p in predictions])
        columns[f"iter_{iteration:02d}"] = [
            f"{'✓' if p['correct'] else '✗'} {_short(p['completion'], width)}" for p in predictions
        ]
    return pd.DataFrame(columns)


def accuracy_by_group(run: Run, field: str = "kind") -> pd.DataFrame:
    """Test accuracy per group (a question kind, a MATH level or subject) at each evaluated iteration: where the
    gain comes from. Empty when the test rows carry no such field."""
    columns = {}
    for iteration in range(run.config.iterations + 1):
        groups = run.metrics(iteration).get("eval", {}).get(f"by_{field}")
        if groups:
            columns[f"iter_{iteration:02d}"] = {k: v["accuracy"] for k, v in groups.items()}
            columns.setdefault("n", {k: v["n"] for k, v in groups.items()})
    return pd.DataFrame(columns).rename_axis(field)


def accuracy_by_groups(run: Run) -> pd.DataFrame:
    """`accuracy_by_group` for every grouping field the test rows carry (kind, level, subject), one table with
    the field as the first index level; empty when they carry none."""
    tables = {field: accuracy_by_group(run, field) for field in GROUP_FIELDS}
    tables = {field: table for field, table in tables.items() if not table.empty}
    return pd.concat(tables, names=["field"]) if tables else pd.DataFrame()


def second_set_table(run: Run) -> pd.DataFrame:
    """The forgetting check: accuracy and reference-solution loss on eval.second_set, RFT and baseline, at each
    iteration where it was evaluated."""
    second = run.config.eval.second_set
    if second is None:
        return pd.DataFrame()
    rows = []
    for iteration in range(run.config.iterations + 1):
        m = run.metrics(iteration)
        rft, base = m.get(f"eval_{second.name}"), m.get(f"baseline_eval_{second.name}")
        if rft is None:
            continue
        rows.append({"iteration": iteration, "set": second.name, "n": rft["n"], "accuracy": rft["accuracy"],
                     "solution_loss": rft.get("solution_loss"),
                     "baseline_accuracy": (base or {}).get("accuracy"),
                     "baseline_solution_loss": (base or {}).get("solution_loss")})
    return pd.DataFrame(rows)


def plot_runs(run_dirs: list[str | Path], ax=None):
    """Several runs' test accuracy per iteration on one plot (e.g. the outcome filter against the PRM filter)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for run_dir in run_dirs:
        summary = run_summary(Run(run_dir))
        if not summary.empty:
            ax.plot(summary["iteration"], summary["accuracy"], marker="o", label=Path(run_dir).name)
    ax.set(xlabel="iteration", ylabel="test accuracy (greedy pass@1)", title="Runs compared", ylim=(0, 1))
    ax.legend()
    return ax


def compare_runs(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Runs side by side (e.g. SFT vs LoRA vs DPO vs GRPO on the same task): how each trained, its accuracy at
    each iteration, the samples it drew, and its wall time."""
    rows = []
    for run_dir in run_dirs:
        run = Run(run_dir)
        summary = run_summary(run)
        if summary.empty:
            continue
        train = run.config.train
        stages = run.state()["stages"]
        rows.append({
            "run": run.dir.name, "algorithm": train.algorithm, "method": train.method,
            "strategy": run.config.sample.strategy,
            **{f"acc_iter_{int(i):02d}": acc for i, acc in zip(summary["iteration"], summary["accuracy"])},
            "gain": summary["accuracy"].iloc[-1] - summary["accuracy"].iloc[0],
            "samples_drawn": int(summary["samples"].fillna(0).sum()),
            "sample_tokens": sum(sampled_tokens(run.metrics(i)) for i in range(1, run.config.iterations + 1)),
            "minutes": round(sum(s.get("seconds", 0) for s in stages.values()) / 60, 1),
        })
    return pd.DataFrame(rows)


def sampled_tokens(metrics: dict) -> int:
    """The tokens an iteration's sample stage generated: a search's every candidate, or the samples'."""
    sampling = metrics.get("sampling", {})
    return int(sampling.get("search", {}).get("tokens", sampling.get("completion_tokens", 0)) or 0)


def hand_runs(run: Run) -> pd.DataFrame:
    """The stages run by hand in a notebook, and the values they changed from the recipe's (run.json)."""
    return pd.DataFrame([
        {"stage": key, "status": info.get("status"), "overrides": info.get("overrides") or {}}
        for key, info in run.state()["stages"].items() if info.get("by_hand")
    ], columns=["stage", "status", "overrides"])
