"""Runs the stage notebooks with papermill, iteration by iteration, and resumes where a run stopped.

Each stage's parameters are its stage config's fields at that iteration (`RunConfig.stage_config`; so an
executed notebook shows what it ran with), plus `run_dir` and `iteration`. A stage marked done in run.json is
skipped (also one run by hand: the log says what it changed); a failed or interrupted one (still marked running)
is run again. A failed cell keeps the partial notebook and raises StageFailed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import preflight, tracking
from .config import RunConfig
from .exceptions import ConfigError, StageFailed
from .io import atomic_write_text, environment_set
from .paths import NOTEBOOKS_DIR
from .progress import QUIET_LIBRARY_BARS, clean_notebook
from .run import PIPELINE_STAGE_ENV, STAGE_NOTEBOOKS, Run

logger = logging.getLogger(__name__)

STAGES = tuple(STAGE_NOTEBOOKS.values())  # 01_sample, 02_prm, 03_filter, 04_train, 05_evaluate
REPORT = "06_report"
ON_POLICY_SKIPS = ("01_sample", "02_prm", "03_filter")
# The kernel app's own log says at every start that it runs over TCP on loopback and at every shutdown that it
# caught the interrupt papermill stops it with; a cell's error reaches the pipeline through papermill.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
_SECTIONS = {notebook: section for section, notebook in STAGE_NOTEBOOKS.items()}


@dataclass(frozen=True)
class Stage:
    name: str  # notebook name without .ipynb
    iteration: int | None  # None: the run-level report

    @property
    def key(self) -> str:
        return self.name if self.iteration is None else f"iter_{self.iteration:02d}/{self.name}"

    def output_notebook(self, run: Run) -> Path:
        folder = run.dir if self.iteration is None else run.iter_dir(self.iteration)
        return folder / f"{self.name}.ipynb"


def plan(config: RunConfig) -> list[Stage]:
    """Iteration 0 (warm-up if any, then evaluation), then the stages of each iteration, then the report. An
    iteration trains a PRM (02_prm) only when the config says so (`RunConfig.trains_prm`); GRPO samples inside
    its trainer, so its iterations are train and evaluate only."""
    stages = [Stage("04_train", 0)] if config.warmup.max_steps > 0 else []
    stages.append(Stage("05_evaluate", 0))
    for iteration in range(1, config.iterations + 1):
        skipped = set(ON_POLICY_SKIPS) if config.at_iteration(iteration).train.algorithm == "grpo" else set()
        if not config.trains_prm(iteration):
            skipped.add("02_prm")
        stages += [Stage(name, iteration) for name in STAGES if name not in skipped]
    return stages + [Stage(REPORT, None)]


def stage_parameters(config: RunConfig, stage: Stage, run_dir: Path) -> dict:
    """What papermill injects: run_dir, iteration and the stage config's fields at this iteration (schedules
    resolved; warm-up values in iteration 0)."""
    params: dict = {"run_dir": str(run_dir)}
    if stage.iteration is None:
        return params
    stage_config = config.stage_config(_SECTIONS[stage.name], stage.iteration)
    return params | {"iteration": stage.iteration} | stage_config.model_dump(mode="json")


def _check_declared(notebook: Path, params: dict) -> None:
    import papermill as pm

    declared = set(pm.inspect_notebook(str(notebook)))
    undeclared = sorted(set(params) - declared)
    if undeclared:
        raise ConfigError(f"{notebook}: parameters {undeclared} are not declared in its 'parameters' cell")


def run_stage(run: Run, stage: Stage, notebooks_dir: Path = NOTEBOOKS_DIR) -> float:
    import papermill as pm
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    notebook = notebooks_dir / f"{stage.name}.ipynb"
    params = stage_parameters(run.config, stage, run.dir)
    _check_declared(notebook, params)
    output = stage.output_notebook(run)
    output.parent.mkdir(parents=True, exist_ok=True)
    # papermill saves the notebook after every cell: into a partial file, renamed over the output when the stage
    # ends, so a killed stage never leaves a half-written (or empty) notebook where the finished one was
    partial = output.with_name(f".{output.stem}.partial.ipynb")
    before = run.snapshot(stage.key)
    run.set_stage(stage.key, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"), error=None,
                  by_hand=None, overrides=None, stale=None, pid=os.getpid(), outputs=None)
    if stage.iteration and (scheduled := run.config.schedule_values(stage.iteration, _SECTIONS[stage.name])):
        run.update_metrics(stage.iteration, "schedule", scheduled)
    start = time.perf_counter()
    try:
        with kernel_environment({PIPELINE_STAGE_ENV: f"{run.dir}::{stage.key}", **QUIET_LIBRARY_BARS}):
            pm.execute_notebook(str(notebook), str(partial), parameters=params, cwd=str(notebooks_dir),
                                kernel_name="python3", progress_bar=False, extra_arguments=KERNEL_ARGUMENTS)
    except (PapermillExecutionError, DeadKernelError) as e:
        if isinstance(e, DeadKernelError):  # killed (a signal, the out-of-memory killer): no cell error to show
            detail = ("the stage's kernel died (killed by a signal or out of memory); what it finished is kept, run "
                      "the same command again to resume")
        else:
            detail = f"cell {e.exec_count}: {e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}"
        run.set_stage(stage.key, status="failed", error=detail, seconds=round(time.perf_counter() - start, 2),
                      pid=None)
        finish_output(partial, output)  # the partial notebook, to see where it failed
        raise StageFailed(stage.key, str(output), detail) from None
    finish_output(partial, output)
    seconds = round(time.perf_counter() - start, 2)
    run.set_stage(stage.key, status="done", seconds=seconds, pid=None, outputs=run.outputs_since(stage.key, before))
    if stage.iteration is not None:
        run.update_metrics(stage.iteration, "timing_s", {stage.name: seconds})
    return seconds


def finish_output(partial: Path, output: Path) -> None:
    """The executed notebook as a reader should see it (each progress bar's last line, no widget state), moved
    into place in one rename."""
    import nbformat

    if not partial.is_file():
        return
    nb = nbformat.read(partial, as_version=4)
    if clean_notebook(nb):
        atomic_write_text(partial, nbformat.writes(nb))
    os.replace(partial, output)


@contextmanager
def kernel_environment(variables: dict[str, str]):
    """The environment the stage's kernel starts with: `variables`, and this Python's bin folder first on PATH, so
    the kernel is this interpreter with this package even when a kernel spec says just `python` (the one pip
    installs with ipykernel does) and the virtual environment was not activated."""
    bin_dir = str(Path(sys.executable).parent)
    with environment_set({**variables, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}):
        yield


_LOCK_ENV = "RFT_LOCKED_RUN_DIR"  # inherited by the stage kernels: the pipeline that started them holds the lock


@contextmanager
def run_lock(run_dir: Path):
    """One pipeline per run folder: a second `rft run` on a folder in use fails at once instead of mixing writes.

    The stage notebooks the pipeline starts call `ensure_ready` on the same folder; they inherit the environment
    variable naming the locked folder and do not lock again."""
    run_dir = Path(run_dir).resolve()
    if os.environ.get(_LOCK_ENV) == str(run_dir):
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{run_dir} is in use by another rft run; wait for it or use another --output-dir") from None
        previous = os.environ.get(_LOCK_ENV)
        os.environ[_LOCK_ENV] = str(run_dir)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(_LOCK_ENV, None)
            else:
                os.environ[_LOCK_ENV] = previous


def run_pipeline(
    config: RunConfig,
    run_dir: Path | None = None,
    until: str | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    log: Callable[[str], None] = print,
    redo: list[str] = (),
) -> Run:
    """Run (or resume) every stage of `config` in `run_dir`; stop before the stage whose key is `until`. The
    stages in `redo` run again although they are done (a damaged stage: `rft status` names it)."""
    preflight.check(config)
    config = preflight.absolutize_paths(config)
    run_dir = Path(run_dir or config.resolved_output_dir())
    check_output_dir(run_dir)
    with run_lock(run_dir):
        return _run_stages(Run.create(config, run_dir), until, notebooks_dir, log, list(redo))


def check_output_dir(run_dir: Path) -> None:
    """The run folder can be a folder and written to: else one line, before anything is written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--output-dir: {run_dir} is a file; give a folder (new or a run's)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--output-dir: cannot write in {run_dir} ({e.strerror}); give a folder you can write") \
            from None


def _run_stages(run: Run, until: str | None, notebooks_dir: Path, log: Callable[[str], None],
                redo: list[str] = ()) -> Run:
    stages = plan(run.config)
    keys = {s.key for s in stages}
    if until is not None and until not in keys:
        raise ConfigError(f"stage {until!r} is not part of this run (iterations={run.config.iterations})")
    for key in redo:
        if key not in keys:
            raise ConfigError(f"--redo {key}: not a stage of this run (stages: {', '.join(s.key for s in stages)})")
        run.set_stage(key, status="pending", redo=True)
    ran_any, started, spent = False, time.perf_counter(), {}
    for stage in stages:
        if stage.key == until:
            break
        info = run.state()["stages"].get(stage.key, {})
        status = run.stage_status(stage.key)
        if status == "damaged":
            raise ConfigError(f"stage {stage.key} is damaged ({run.damage(stage.key)}); rerun it with "
                              f"`rft run <params> --redo {stage.key}` (the stages after it are kept)")
        if status == "done" and not (stage.iteration is None and ran_any):
            log(f"[skip] {stage.key} (done{by_hand_note(info)})")
            continue
        if info.pop("redo", None):
            log(f"[redo] {stage.key}")
        elif status in ("running", "failed", "interrupted"):
            log(f"[rerun] {stage.key} (was {status}{' by hand' if info.get('by_hand') else ''})")
        elif info.get("stale"):
            log(f"[rerun] {stage.key} (its inputs changed: {info['stale']})")
        log(f"[run]  {stage.key} ...")
        run.set_stage(stage.key, redo=None)
        seconds = run_stage(run, stage, notebooks_dir)
        ran_any = True
        spent.setdefault(stage.name, []).append(seconds)
        if stage.name == "05_evaluate":
            tracking.log_iteration(run, stage.iteration)
        log(f"[done] {stage.key} in {seconds:.1f}s{evaluation_note(run, stage)}"
            f"{time_note(stages, stages.index(stage), spent, time.perf_counter() - started)}")
    return run


def evaluation_note(run: Run, stage: Stage) -> str:
    """': accuracy 0.530 (baseline 0.497)' after an evaluation stage."""
    if stage.name != "05_evaluate":
        return ""
    metrics = run.metrics(stage.iteration)
    note = f": accuracy {metrics['eval']['accuracy']:.3f}" if "eval" in metrics else ""
    if "baseline_eval" in metrics:
        note += f" (baseline {metrics['baseline_eval']['accuracy']:.3f})"
    return note


def time_note(stages: list[Stage], index: int, spent: dict[str, list[float]], elapsed: float) -> str:
    """' · 2m10s elapsed, about 1m40s left': what is left estimated from this command's stages of the same name
    (the mean of those done), or of all stages done where none of that name ran yet."""
    left = stages[index + 1:]
    if not left:
        return f" · {_duration(elapsed)} elapsed"
    every = [s for times in spent.values() for s in times]
    estimate = sum(sum(spent.get(s.name, every)) / len(spent.get(s.name, every)) for s in left)
    return f" · {_duration(elapsed)} elapsed, about {_duration(estimate)} left"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def by_hand_note(info: dict) -> str:
    """', run by hand with n=4' for a stage entry of run.json that a notebook run by hand finished."""
    if not info.get("by_hand"):
        return ""
    changed = ", ".join(f"{k}={v!r}" for k, v in info.get("overrides", {}).items())
    return f", run by hand with {changed}" if changed else ", run by hand"


def ensure_ready(run_dir: str | Path, params_file: str | Path, stage_key: str, log: Callable[[str], None] = print) -> Run:
    """For a notebook run by hand: create the run if needed and run every stage before `stage_key`."""
    from .recipes import load_config

    run_dir = Path(run_dir)
    if (run_dir / "run.json").exists():
        config = Run(run_dir).config
    else:
        config = load_config(params_file)
        config.output_dir = str(run_dir.resolve())
    quiet = lambda message: None if message.startswith("[skip]") else log(message)  # noqa: E731
    run = run_pipeline(config, run_dir, until=stage_key, log=quiet)
    iteration, _, name = stage_key.rpartition("/")
    where = f"iteration {iteration.removeprefix('iter_')} · " if iteration else ""
    log(f"run {run.config.run_name} · {where}{name} · {run.dir}")  # a page opened alone says what it belongs to
    return run
