"""The run directory: where every stage reads its inputs and writes its outputs (a contract tests and tools read).

    DIR/run.json                  resolved parameters, git commit, status of every stage
    DIR/data/{train,test,seed}.jsonl   the task's splits (and <name>.jsonl: eval.second_set's questions)
    DIR/base_model/               the scratch model (only when model.name_or_path is "scratch")
    DIR/iter_NN/                  samples.jsonl, scored.jsonl, train.jsonl, checkpoint/, metrics.json, notebooks
    DIR/best_checkpoint           link to the checkpoint with the best test accuracy so far (run.json: "best")
    DIR/05_report.ipynb           the executed report
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .config import RunConfig, config_from_dict
from .data import load_eval_set, read_system_prompt, write_task
from .exceptions import ConfigError
from .io import read_json, read_jsonl, write_json, write_jsonl
from .gguf_models import convert_gguf
from .models import is_checkpoint, model_source, save_scratch_model

RUN_FILE = "run.json"
# Changing these never invalidates finished stages: more iterations extend a run; output_dir is where it lives.
_EXTENDABLE = {"iterations", "output_dir"}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as 'key: old -> new'."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


class Run:
    """A run directory and its resolved config. Paths only: nothing here loads a model."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir).resolve()
        state = read_json(self.dir / RUN_FILE)
        self.config: RunConfig = config_from_dict(state["config"], str(self.dir / RUN_FILE))

    # -- creation -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, config: RunConfig, run_dir: str | Path) -> "Run":
        """Write run.json first, then the data and the scratch model; a second call with the same config reuses it."""
        run_dir = Path(run_dir).resolve()
        state_path = run_dir / RUN_FILE
        if state_path.exists():
            state = read_json(state_path)
            # Re-validated, so settings added to the toolkit since (with their defaults) do not count as changes.
            old = config_from_dict(state["config"], str(state_path)).model_dump(mode="json")
            new = config.model_dump(mode="json")
            changes = [c for c in config_changes(old, new) if c.split(":")[0] not in _EXTENDABLE]
            if changes:
                raise ConfigError(
                    f"{state_path}: parameters differ from the finished run's ({'; '.join(changes)}); "
                    "revert them or use another --output-dir"
                )
            state["config"] = new
        else:
            state = {"config": config.model_dump(mode="json"), "git_commit": git_commit(),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stages": {}}
        write_json(state_path, state)
        run = cls(run_dir)
        run.prepare()
        return run

    def prepare(self) -> None:
        """Data splits and the scratch model, made once per run (idempotent)."""
        if not (self.data_dir / "test.jsonl").exists():
            write_task(self.config.task, self.config.seed, self.data_dir)
        if self.config.model.is_scratch and not (self.base_model_dir / "config.json").exists():
            save_scratch_model(self.config.model.scratch, self.base_model_dir, self.config.seed)
        second = self.config.eval.second_set
        if second and not self.second_set_path.exists():  # a copy, so the run does not depend on the source later
            write_jsonl(self.second_set_path, load_eval_set(second))
        if self.config.model.gguf_file:
            convert_gguf(self.config.model.name_or_path, self.config.model.gguf_file)  # cached after the first run

    # -- paths ------------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def second_set_path(self) -> Path:
        second = self.config.eval.second_set
        return self.data_dir / f"{second.name if second else 'second_set'}.jsonl"

    def second_set(self) -> list[dict]:
        return read_jsonl(self.second_set_path)

    @property
    def second_set_system_prompt(self) -> str | None:
        second = self.config.eval.second_set
        if second and second.system_prompt_file:
            return Path(second.system_prompt_file).read_text().strip()
        return self.system_prompt

    @property
    def base_model_dir(self) -> Path:
        return self.dir / "base_model"

    def iter_dir(self, iteration: int) -> Path:
        return self.dir / f"iter_{iteration:02d}"

    def checkpoint(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "checkpoint"

    def baseline_checkpoint(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "baseline_checkpoint"

    @property
    def base_model(self) -> str:
        return model_source(self.config.model, self.base_model_dir)

    def _latest(self, iteration: int, which) -> str:
        for i in range(iteration, -1, -1):
            if is_checkpoint(which(i)):
                return str(which(i))
        return self.base_model

    def policy_model(self, iteration: int) -> str:
        """The model that samples in `iteration`: the newest checkpoint before it (iteration 0's is the warm-up)."""
        return self._latest(iteration - 1, self.checkpoint)

    def start_model(self) -> str:
        """Iteration 0's model: the warm-up checkpoint, or the base model when there is no warm-up."""
        return self._latest(0, self.checkpoint)

    def baseline_model(self, iteration: int) -> str:
        """The baseline continues from its own previous checkpoint (iteration 0's model at first)."""
        return self._latest(iteration - 1, lambda i: self.baseline_checkpoint(i) if i else self.checkpoint(0))

    def iteration_seed(self, iteration: int) -> int:
        """One seed per iteration: which questions are sampled, the engines and the samples."""
        return self.config.seed * 1000 + iteration

    @property
    def system_prompt(self) -> str | None:
        return read_system_prompt(self.config.task)

    # -- state ------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return read_json(self.dir / RUN_FILE)

    def stage_status(self, key: str) -> str:
        return self.state()["stages"].get(key, {}).get("status", "pending")

    def set_stage(self, key: str, **fields) -> None:
        state = self.state()
        state["stages"][key] = {**state["stages"].get(key, {}), **fields}
        write_json(self.dir / RUN_FILE, state)

    @property
    def best_link(self) -> Path:
        return self.dir / "best_checkpoint"

    def record_best(self, iteration: int, accuracy: float) -> dict:
        """Track the best-evaluated model, not just the last: run.json's "best" and the link DIR/best_checkpoint
        to its folder (later iterations keep their own checkpoints)."""
        state = self.state()
        best = state.get("best")
        if best is None or accuracy > best["accuracy"] or best["iteration"] == iteration:
            checkpoint = self.policy_model(iteration + 1)  # the model this iteration evaluated
            best = {"iteration": iteration, "accuracy": accuracy, "checkpoint": checkpoint}
            state["best"] = best
            write_json(self.dir / RUN_FILE, state)
            if Path(checkpoint).is_dir():
                tmp = self.best_link.with_name(".best_checkpoint.tmp")
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(os.path.relpath(checkpoint, self.dir))
                os.replace(tmp, self.best_link)
        return best

    def metrics(self, iteration: int) -> dict:
        path = self.iter_dir(iteration) / "metrics.json"
        return read_json(path) if path.exists() else {"iteration": iteration}

    def update_metrics(self, iteration: int, section: str, values) -> dict:
        metrics = self.metrics(iteration)
        metrics[section] = {**metrics.get(section, {}), **values} if isinstance(values, dict) else values
        write_json(self.iter_dir(iteration) / "metrics.json", metrics)
        return metrics
