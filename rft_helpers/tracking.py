"""Experiment trackers (`tracking.report_to`): TensorBoard, Weights & Biases, MLflow.

One tracker run per RFT run. TRL's trainers log their steps into it (their own `report_to` integrations, pointed
at the run by `trainer_environment`), and the pipeline logs each iteration's metrics (accuracy, kept ratio,
tokens, seconds) and a table of test answers after its evaluation (`log_iteration`), at step = the iteration.

    DIR/tensorboard/rft/                 the pipeline's scalars and sample tables (text)
    DIR/tensorboard/iter_NN/<role>/      a trainer's losses (role: warmup, policy, baseline)
    DIR/tracking.json                    what was logged (so a resumed run logs each iteration once), MLflow's run id
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .config import TRACKERS, TrackingConfig
from .exceptions import ConfigError
from .io import environment_set, read_json, read_jsonl, write_json
from .records import completion_text
from .run import Run

logger = logging.getLogger(__name__)

STATE_FILE = "tracking.json"
# metrics.json sections logged as scalars (numbers only; lists such as loss histories are the trainers' to log)
LOGGED_SECTIONS = ("eval", "baseline_eval", "sampling", "filter", "prm", "train", "timing_s")


def check_installed(report_to: list[str]) -> None:
    """A tracker that is not installed: one line naming it, before any stage runs."""
    for name in report_to:
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(f"tracking.report_to: {name} is not installed; pip install {TRACKERS[name]}, or "
                              f"remove it from tracking.report_to")


def run_id(run: Run) -> str:
    """A stable id for the run folder: the wandb run id every trainer and the pipeline resume."""
    return hashlib.sha1(str(run.dir).encode()).hexdigest()[:16]


def _state(run: Run) -> dict:
    path = run.dir / STATE_FILE
    return read_json(path) if path.exists() else {"logged": []}


def _mlflow_run(run: Run, config: TrackingConfig) -> str:
    """MLflow's id of this RFT run's MLflow run, created once (MLflow chooses its ids)."""
    import mlflow

    state = _state(run)
    if not state.get("mlflow_run_id"):
        mlflow.set_experiment(config.project)
        with mlflow.start_run(run_name=run.config.run_name) as active:
            state["mlflow_run_id"] = active.info.run_id
        write_json(run.dir / STATE_FILE, state)
    return state["mlflow_run_id"]


def tracker_variables(run: Run, config: TrackingConfig, iteration: int, role: str) -> dict[str, str]:
    """The environment that points TRL's tracker integrations at this RFT run's tracker run."""
    variables: dict[str, str] = {}
    if "tensorboard" in config.report_to:
        variables["TENSORBOARD_LOGGING_DIR"] = str(run.dir / "tensorboard" / f"iter_{iteration:02d}" / role)
    if "wandb" in config.report_to:
        variables |= {"WANDB_PROJECT": config.project, "WANDB_RUN_ID": run_id(run), "WANDB_RESUME": "allow",
                      "WANDB_NAME": run.config.run_name, "WANDB_DIR": str(run.dir)}
    if "mlflow" in config.report_to:
        _default_mlflow_store(run)
        variables |= {"MLFLOW_EXPERIMENT_NAME": config.project, "MLFLOW_RUN_ID": _mlflow_run(run, config)}
    return variables


@contextmanager
def trainer_environment(run: Run, config: TrackingConfig, iteration: int, role: str) -> Iterator[None]:
    """Within: the variables of `tracker_variables` set (a stage kernel trains once or twice; put back after)."""
    with environment_set(tracker_variables(run, config, iteration, role) if config.report_to else {}):
        yield


def _default_mlflow_store(run: Run) -> None:
    """MLflow logs where MLFLOW_TRACKING_URI says (a server, a database), else to a file store in the run folder
    (which MLflow 3 still reads and writes when MLFLOW_ALLOW_FILE_STORE is set)."""
    if "MLFLOW_TRACKING_URI" not in os.environ:
        os.environ["MLFLOW_TRACKING_URI"] = (run.dir / "mlruns").as_uri()
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def iteration_scalars(metrics: dict) -> dict[str, float]:
    """metrics.json's numbers as `section/key` (nested keys joined with /), booleans and lists left out."""
    scalars: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            scalars[prefix] = float(value)

    for section in LOGGED_SECTIONS:
        if section in metrics:
            walk(section, metrics[section])
    return scalars


def sample_answers(run: Run, iteration: int, k: int) -> list[dict]:
    """The first k test answers of the iteration: question, answer, reference, correct."""
    path = run.iter_dir(iteration) / "predictions.jsonl"
    if not path.exists() or k == 0:
        return []
    return [{"question": p["question"], "answer": completion_text(p["completion"]), "reference": str(p["answer"]),
             "correct": bool(p["correct"])} for p in read_jsonl(path)[:k]]


def log_iteration(run: Run, iteration: int) -> list[str]:
    """Log an evaluated iteration's metrics and sample answers to every tracker of the run, once (a resumed
    run skips what it logged). Returns the trackers it logged to."""
    config = run.config.tracking
    state = _state(run)
    if not config.report_to or iteration in state["logged"]:
        return []
    scalars = iteration_scalars(run.metrics(iteration))
    scalars["iteration/total_seconds"] = sum(run.metrics(iteration).get("timing_s", {}).values())
    samples = sample_answers(run, iteration, config.samples_logged)
    for name in config.report_to:
        try:
            LOGGERS[name](run, config, iteration, scalars, samples)
        except Exception as e:  # noqa: BLE001 - a tracker that fails (a server gone) must not fail the run
            logger.warning("tracking: iteration %d not logged to %s (%s: %s); metrics.json has it", iteration,
                           name, type(e).__name__, str(e).splitlines()[0][:160] if str(e) else "")
    state = _state(run)  # MLflow may have added its run id
    state["logged"] = sorted({*state["logged"], iteration})
    write_json(run.dir / STATE_FILE, state)
    return list(config.report_to)


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    header = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
    return header + "".join("| " + " | ".join(_cell(v) for v in row.values()) + " |\n" for row in rows)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ⏎ ")


def _log_tensorboard(run: Run, config: TrackingConfig, iteration: int, scalars: dict, samples: list[dict]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run.dir / "tensorboard" / "rft")) as writer:
        for key, value in scalars.items():
            writer.add_scalar(key, value, iteration)
        if samples:
            writer.add_text("test_answers", _markdown_table(samples), iteration)


def _log_wandb(run: Run, config: TrackingConfig, iteration: int, scalars: dict, samples: list[dict]) -> None:
    import wandb

    active = wandb.init(project=config.project, id=run_id(run), name=run.config.run_name, resume="allow",
                        dir=str(run.dir), config=run.config.model_dump(mode="json"), reinit="finish_previous")
    active.define_metric("iteration")
    for section in {key.partition("/")[0] for key in scalars}:
        active.define_metric(f"{section}/*", step_metric="iteration")
    row: dict = {"iteration": iteration, **scalars}
    if samples:
        row["test_answers"] = wandb.Table(columns=list(samples[0]), data=[list(s.values()) for s in samples])
    active.log(row)
    active.finish()


def _log_mlflow(run: Run, config: TrackingConfig, iteration: int, scalars: dict, samples: list[dict]) -> None:
    import mlflow

    _default_mlflow_store(run)
    mlflow.set_experiment(config.project)
    with mlflow.start_run(run_id=_mlflow_run(run, config)):
        # MLflow's metric names allow letters, digits and _-./ and spaces
        mlflow.log_metrics({key.replace("@", "_at_"): value for key, value in scalars.items()}, step=iteration)
        if samples:
            mlflow.log_table({column: [s[column] for s in samples] for column in samples[0]},
                             artifact_file=f"test_answers/iter_{iteration:02d}.json")


LOGGERS = {"tensorboard": _log_tensorboard, "wandb": _log_wandb, "mlflow": _log_mlflow}


def tensorboard_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Read back the scalars of a TensorBoard folder: tag -> [(step, value)] (tensorboard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
