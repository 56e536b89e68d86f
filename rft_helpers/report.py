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
    scored, ✓/✗ by the filter's reward, each reward's value, kept or not and why not."""
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
            rewards = row.get("rewards") or {}
            first = next(iter(rewards.values()), None)
            entry |= {"extracted": row.get("extracted_answer"), "answer": _mark(first) if first is not None else "",
                      **{f"reward: {name}": value for name, value in rewards.items()},
                      "kept": _mark(row["kept"]), "reject_reason": "" if row["kept"] else row.get("reject_reason") or ""}
        table.append(entry)
    return pd.DataFrame(table)


def _mark(ok) -> str:
    return "✓" if ok else "✗"


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
         "reference": p["answer"], "correct": _mark(p["correct"])}
        for p in right + wrong
    ])


def plot_completion_lengths(rows: list[dict], max_new_tokens: int | None = None, ax=None):
    """Completion lengths; with `max_new_tokens`, the cap marked (samples piled up at it were cut off)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3))[1]
    lengths = [r["completion_tokens"] for r in rows]
    ax.hist(lengths, bins=_integer_bins(lengths))
    if max_new_tokens:
        cut = sum(length >= max_new_tokens for length in lengths)
        ax.axvline(max_new_tokens, color="tab:red", linestyle="--",
                   label=f"max_new_tokens = {max_new_tokens} ({cut} of {len(lengths)} samples reach it)")
        ax.legend(loc="upper left", fontsize=8)
    ax.set(xlabel="completion tokens", ylabel="samples", title="Completion lengths")
    return ax


def _integer_bins(values: list[int], most: int = 40) -> list[float]:
    """Bin edges for whole numbers: one bin per value where they span few, else `most` equal bins."""
    low, high = (min(values), max(values)) if values else (0, 1)
    width = max(1, -(-(high - low + 1) // most))
    return [low - 0.5 + width * i for i in range((high - low) // width + 2)]


def plot_solve_rate(scored: list[dict], reward: str, ax=None):
    """Per question: the fraction of its samples that earned the reward (RFT learns from questions in (0, 1]).
    One bar per possible fraction (n samples per question: 0, 1/n, ..., 1)."""
    import matplotlib.pyplot as plt

    frame = pd.DataFrame({"id": [r["id"] for r in scored], "score": [r["rewards"].get(reward) or 0 for r in scored]})
    rates = frame.groupby("id")["score"].mean()
    n = int(frame.groupby("id").size().max()) if len(frame) else 1
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    ax.hist(rates, bins=[(i - 0.5) / n for i in range(n + 2)], rwidth=0.85)
    ax.set(xlabel=f"fraction of a question's samples correct (of {n})", ylabel="questions",
           title="Solve rate per question")
    return ax


def plot_loss(losses: list[float], rewards: list[float] | None = None, baseline_losses: list[float] | None = None,
              ax=None):
    """The training loss per step, the baseline's beside it when it trained; with GRPO, also the mean reward of
    each step's samples (right axis)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3))[1]
    if not losses:
        ax.text(0.5, 0.5, "nothing was trained in this stage", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    ax.plot(range(1, len(losses) + 1), losses, label="policy (RFT data)")
    if baseline_losses:
        ax.plot(range(1, len(baseline_losses) + 1), baseline_losses, linestyle="--", label="baseline (seed set)")
    ax.set(xlabel="optimizer step", ylabel="loss", title="Training loss" + (" and reward" if rewards else ""))
    ax.legend(loc="upper right", fontsize=8)
    if rewards:
        right = ax.twinx()
        right.plot(range(1, len(rewards) + 1), rewards, color="tab:green", label="mean reward")
        right.set_ylabel("mean reward of the step's samples")
    return ax


def loss_note(summary: dict) -> str:
    """One line on what the loss did, read off the numbers (the mean of the first and of the last tenth of the
    steps), so the page never claims a fall that did not happen."""
    losses = summary.get("loss_history") or []
    if not losses:
        return f"Nothing was trained: {summary.get('reason', 'no training data')}."
    tenth = max(1, len(losses) // 10)
    first, last = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
    trend = "fell" if last < first * 0.95 else "rose" if last > first * 1.05 else "stayed about level"
    note = (f"Over {len(losses)} steps the loss {trend}: {first:.3f} on average over the first {tenth} steps, "
            f"{last:.3f} over the last {tenth}.")
    if trend != "fell" and summary.get("mode") not in ("warmup", None):
        note += (" The policy trains on samples it wrote itself, which it already finds likely; a level or rising "
                 "loss is common there, and test accuracy is the measure that counts.")
    return note


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


def plot_label_distribution(rows: list[dict], labels: str = "soft", ax=None):
    """The step targets the PRM learns (prm.labels' share of a step's rollouts that reach the right answer or its
    relative label, pooled over identical steps with prm.pool_identical_steps), split by the truth where it is
    known: wrong steps should sit left, right ones right."""
    import matplotlib.pyplot as plt

    from .prm.labels import training_targets

    ax = ax or plt.subplots(figsize=(6, 3))[1]
    shares = [(target, truth) for r in rows
              for target, truth in zip(training_targets(r, labels), r.get("truth") or [None] * len(r["completions"]))]
    bins = [i / 10 for i in range(11)]
    if any(t is not None for _, t in shares):
        ax.hist([[s for s, t in shares if t], [s for s, t in shares if t is False]], bins=bins, stacked=True,
                label=["right steps", "wrong steps"], color=["tab:green", "tab:red"])
        ax.legend()
    else:
        ax.hist([s for s, _ in shares], bins=bins)
    xlabel = {"soft": "share of the step's rollouts that reach the right answer",
              "hard": "whether any of the step's rollouts reaches the right answer",
              "relative": "relative label: what the step changed, and whether the policy writes it"}[labels]
    ax.set(xlabel=xlabel, ylabel="steps", title=f"Monte Carlo step labels ({labels})")
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


def _strategy_panels(result: dict) -> dict:
    """The parts of a test-time compute result shaped {strategy: {N: {accuracy, tokens, ...}}}, one per PRM."""
    return {name: by_strategy for name, by_strategy in result.items()
            if isinstance(by_strategy, dict) and by_strategy
            and all(isinstance(by_n, dict) and by_n and all(isinstance(v, dict) and {"accuracy", "tokens"} <= set(v)
                                                          for v in by_n.values())
                    for by_n in by_strategy.values())}


def load_test_time_compute(path: str | Path) -> dict:
    """bench/test_time_compute.py's result: the JSON file it writes (`--out`), or its printed log, whose last line
    is the same object."""
    import json

    from .exceptions import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; run python bench/test_time_compute.py (it writes "
                        "outputs/bench_ttc/test_time_compute.json) or fix test_time_compute in the parameters cell")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or not _strategy_panels(result):
        raise DataError(f"{path}: its last line is not bench/test_time_compute.py's JSON object "
                        "({prm: {strategy: {N: {accuracy, tokens}}}}); point test_time_compute at the file it wrote")
    return result


def plot_test_time_compute_result(result: dict):
    """One panel of accuracy against tokens per PRM in a bench/test_time_compute.py result (majority voting, which
    uses no PRM, drawn in each), with greedy decoding as a dashed line."""
    import matplotlib.pyplot as plt

    panels = _strategy_panels(result)
    majority = next(({"majority": p["majority"]} for p in panels.values() if "majority" in p), {})
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), sharey=True, squeeze=False)
    titles = {"monte_carlo_prm": "PRM from Monte Carlo rollouts", "checker_prm": "PRM from the checker's labels"}
    for ax, (name, by_strategy) in zip(axes[0], panels.items()):
        plot_test_time_compute(majority | by_strategy, titles.get(name, name.replace("_", " ")), ax)
        if "greedy" in result:
            ax.axhline(result["greedy"]["accuracy"], color="grey", linestyle="--", linewidth=1, label="greedy")
            ax.legend(fontsize=8)
    figure.tight_layout()
    return axes[0][0]


def search_summary(run: Run) -> pd.DataFrame:
    """Per iteration, the sample and evaluate strategies and what their searches spent (tokens, PRM calls);
    empty when every iteration sampled plainly and answered greedily."""
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
    searched = any(r["sample_strategy"] not in (None, "sample") or r["eval_strategy"] not in (None, "greedy")
                   for r in rows)
    return pd.DataFrame(rows) if searched else pd.DataFrame()


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


def headline(run: Run) -> dict:
    """What a reader wants first: the run, its final test accuracy against the baseline's, the gain over
    iteration 0, the best checkpoint, the iterations done and the wall time (run.json and metrics.json)."""
    summary = run_summary(run)
    state = run.state()
    stages = state["stages"]
    done = [i for i in range(1, run.config.iterations + 1)
            if stages.get(f"iter_{i:02d}/05_evaluate", {}).get("status") == "done"]
    out = {"run": run.config.run_name, "iterations_done": len(done), "iterations": run.config.iterations,
           "final_iteration": None, "final_accuracy": None, "baseline_accuracy": None, "start_accuracy": None,
           "gain": None, "gain_over_baseline": None, "best_iteration": None, "best_accuracy": None,
           "best_checkpoint": None, "wall_seconds": round(sum(s.get("seconds", 0) for s in stages.values()), 1)}
    if summary.empty:
        return out
    first, last = summary.iloc[0], summary.iloc[-1]
    out |= {"final_iteration": int(last["iteration"]), "final_accuracy": float(last["accuracy"]),
            "start_accuracy": float(first["accuracy"]), "gain": float(last["accuracy"] - first["accuracy"])}
    if pd.notna(last["baseline_accuracy"]):
        out |= {"baseline_accuracy": float(last["baseline_accuracy"]),
                "gain_over_baseline": float(last["accuracy"] - last["baseline_accuracy"])}
    if state.get("best"):
        best = state["best"]
        out |= {"best_iteration": best["iteration"], "best_accuracy": best["accuracy"],
                "best_checkpoint": str(Path(best["checkpoint"]).relative_to(run.dir))
                if Path(best["checkpoint"]).is_relative_to(run.dir) else best["checkpoint"]}
    return out


def headline_markdown(run: Run) -> Markdown:
    """`headline` as a few lines of markdown (the report's first cell and the export's index page)."""
    h = headline(run)
    lines = [f"**Run `{h['run']}`**: {h['iterations_done']} of {h['iterations']} iterations done, "
             f"{_minutes(h['wall_seconds'])} of stage time."]
    if h["final_accuracy"] is None:
        return Markdown("\n\n".join(lines + ["No iteration has been evaluated yet."]))
    line = (f"Test accuracy **{_percent(h['final_accuracy'])}** at iteration {h['final_iteration']}, from "
            f"{_percent(h['start_accuracy'])} at iteration 0 (**{_points(h['gain'])}**)")
    if h["baseline_accuracy"] is not None:
        line += (f"; the baseline (SFT on the seed set, as many steps) {_percent(h['baseline_accuracy'])}: "
                 f"RFT **{_points(h['gain_over_baseline'])}** over it")
    lines.append(line + ".")
    if h["best_iteration"] is not None:
        lines.append(f"Best checkpoint: iteration {h['best_iteration']} ({_percent(h['best_accuracy'])}), "
                     f"`{h['best_checkpoint']}`.")
    return Markdown("\n\n".join(lines))


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# How format_table shows a column: shares as percentages, counts as integers, the rest with three decimals.
PERCENT_COLUMNS = ("accuracy", "baseline_accuracy", "kept_ratio", "kept_process_accuracy", "process_accuracy",
                   "gain", "vs_baseline")
INTEGER_COLUMNS = ("iteration", "samples", "kept", "questions_solved", "train_steps", "sequences_per_step",
                   "sample_tokens", "sample_prm_calls", "eval_tokens", "eval_prm_calls", "samples_drawn", "n")


def format_table(table: pd.DataFrame):
    """A table as a reader should see it: percentages, integers, a dash where there is no value, ✓ in green and
    ✗ in red, no index column."""
    def shown(column: str):
        if column in PERCENT_COLUMNS or column.startswith(("maj@", "pass@", "acc_iter_")):
            return lambda v: "–" if pd.isna(v) else (f"{100 * v:+.1f} pts" if column in ("gain", "vs_baseline")
                                                       else f"{100 * v:.1f}%")
        if column in INTEGER_COLUMNS:
            return lambda v: "–" if pd.isna(v) else f"{int(v):,}"
        return lambda v: "–" if v is None or (isinstance(v, float) and pd.isna(v)) else (
            f"{v:.3g}" if isinstance(v, float) else str(v))

    def colour(value) -> str:
        text = str(value)
        return "color: #1a7f37" if text.startswith("✓") else "color: #cf222e" if text.startswith("✗") else ""

    styler = table.style.format({column: shown(str(column)) for column in table.columns}).hide(axis="index")
    return styler.map(colour)


HEADLINE_COLUMNS = ("iteration", "algorithm", "accuracy", "gain", "baseline_accuracy", "vs_baseline", "samples",
                    "kept", "kept_ratio", "process_accuracy", "seconds")


def accuracy_table(summary: pd.DataFrame, columns: tuple[str, ...] | None = None):
    """The report's summary: per iteration, accuracy, the gain over iteration 0 and over the baseline, and what
    each iteration sampled, kept and trained (`columns` only, when given; a column with no value in any iteration
    is left out). Gains are in percentage points."""
    if summary.empty:
        return Note("No iteration has been evaluated yet.")
    table = summary.copy()
    start = table.loc[0, "accuracy"] if len(table) else None
    table.insert(table.columns.get_loc("accuracy") + 1, "gain", table["accuracy"] - start)
    table.insert(table.columns.get_loc("baseline_accuracy") + 1, "vs_baseline",
                 table["accuracy"] - table["baseline_accuracy"])
    table = table[[c for c in table.columns if table[c].notna().any() and (columns is None or c in columns)]]
    return format_table(table)


class Markdown(str):
    """Text that a notebook shows as markdown."""

    def _repr_markdown_(self) -> str:
        return str(self)


class Note(Markdown):
    """One line in place of an empty table or plot, saying why it is empty (in italics)."""

    def _repr_markdown_(self) -> str:
        return f"*{self}*"


def section(content, why_empty: str):
    """A section's table formatted, or a Note saying why the section is empty. A plot (an Axes) shows itself:
    None then, so the notebook prints no Axes repr below it."""
    if content is None or (isinstance(content, pd.DataFrame) and content.empty):
        return Note(why_empty)
    if isinstance(content, pd.DataFrame):
        return format_table(content.reset_index() if content.index.name or content.index.nlevels > 1 else content)
    return None if hasattr(content, "figure") else content


def evaluation_table(results: dict):
    """05_evaluate's results, one row per model evaluated (the policy, the baseline, a second set)."""
    shown = ("n", "correct", "accuracy", "process_accuracy", "solution_loss")
    rows = [{"model": name, **{k: v for k, v in r.items() if k in shown or k.startswith(("maj@", "pass@"))}}
            for name, r in results.items()]
    return format_table(pd.DataFrame(rows))


def train_summary(summary: dict, run: Run | None = None) -> pd.DataFrame:
    """04_train's summary without the per-step histories (the loss plot shows them)."""
    return summary_table({k: v for k, v in summary.items() if not k.endswith("_history") and k != "learning_rates"}
                         | ({"baseline": {k: v for k, v in summary["baseline"].items() if not k.endswith("_history")}}
                            if "baseline" in summary else {}), run)


def summary_table(values: dict, run: Run | None = None) -> pd.DataFrame:
    """A stage's summary dict as a small two-column table: shares as percentages, counts with separators, paths
    relative to the run folder, nested dicts flattened (`rollouts.tokens`), long lists left out."""
    rows = []

    def add(key: str, value) -> None:
        if isinstance(value, dict):
            for inner, v in value.items():
                add(f"{key}.{inner}", v)
            return
        if isinstance(value, list) and len(value) > 8:
            return
        rows.append({"": key, "value": _shown_value(key, value, run)})

    for key, value in values.items():
        add(key, value)
    return pd.DataFrame(rows).set_index("")


def _shown_value(key: str, value, run: Run | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return _mark(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        share = any(word in key for word in ("ratio", "accuracy", "share", "agreement", "auroc", "rate"))
        return f"{100 * value:.1f}%" if share and 0 <= value <= 1 and "auroc" not in key else f"{value:.4g}"
    text = str(value)
    if run is not None and text.startswith(str(run.dir)):
        return text[len(str(run.dir)):].lstrip("/") or "."
    return text


def settings_html(run: Run) -> str:
    """The run's settings as YAML: the sections this run used open, the others folded away."""
    import html

    import yaml

    config = run.config
    used = {"run": True, "model": True, "task": True, "sample": True, "filter": True, "train": True, "eval": True,
            "warmup": config.warmup.max_steps > 0, "prm": config.prm.model is not None,
            "vllm": bool({"vllm", "auto"} & {config.sample.engine, config.eval.engine}),
            "openai": config.sample.engine == "openai", "tracking": bool(config.tracking.report_to),
            "schedules": bool(config.schedules)}
    dumped = config.model_dump(mode="json", exclude={"model": {"scratch"}} if config.model.name_or_path != "scratch"
                               else None)
    top = {key: dumped.pop(key) for key in list(dumped) if not isinstance(dumped[key], dict)}
    parts = []
    for name, values in [("run", top), *dumped.items()]:
        text = html.escape(yaml.safe_dump({name: values} if name != "run" else values, sort_keys=False))
        if used.get(name, True):
            parts.append(f"<pre>{text}</pre>")
        else:
            parts.append(f"<details><summary>{name} (not used by this run)</summary><pre>{text}</pre></details>")
    return "\n".join(parts)


class HTML(str):
    """Raw HTML that a notebook shows as HTML."""

    def _repr_html_(self) -> str:
        return str(self)


def settings(run: Run) -> HTML:
    return HTML(settings_html(run))


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
            f"{_mark(p['correct'])} {_short(p['completion'], width)}" for p in predictions
        ]
    return format_table(pd.DataFrame(columns))


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
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
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
