"""The run directory: where every stage reads its inputs and writes its outputs (a contract tests and tools read).

    DIR/run.json                  resolved parameters, git commit, status of every stage (and what a stage run
                                  by hand changed: its `overrides`)
    DIR/data/{train,test,seed}.jsonl   the task's splits (and <name>.jsonl: eval.second_set's questions)
    DIR/base_model/               the scratch model (only when model.name_or_path is "scratch")
    DIR/iter_NN/                  samples.jsonl, prm_labels.jsonl, prm/, scored.jsonl, train.jsonl, checkpoint/,
                                  metrics.json, notebooks
    DIR/best_checkpoint           link to the checkpoint with the best test accuracy so far (run.json: "best")
    DIR/06_report.ipynb           the executed report
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from pydantic import BaseModel, ValidationError

from .config import RunConfig, config_from_dict, format_validation_error
from .data import build_prompt, load_eval_set, read_system_prompt, write_task
from .exceptions import ConfigError
from .gguf_models import convert_gguf, converted_dir, resolve_folder
from .io import read_json, read_jsonl, write_json, write_jsonl
from .models import is_checkpoint, save_scratch_model

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
LENGTH_CHECK = "prompt_lengths.json"  # in data/: the check of the prompts against the model's context, done once
# Changing these never invalidates finished stages: more iterations extend a run; output_dir is where it lives.
# Changes a finished run takes: more iterations, another folder, and how an endpoint is called and paid for (not
# what it samples), so a spending cap can be set or raised and the stage run again continues.
_EXTENDABLE = {"iterations", "output_dir", "openai.max_cost_usd", "openai.max_concurrency", "openai.timeout_s",
               "openai.max_retries", "openai.prompt_price_per_million", "openai.completion_price_per_million"}
STAGE_NOTEBOOKS = {"sample": "01_sample", "prm": "02_prm", "filter": "03_filter", "train": "04_train",
                   "eval": "05_evaluate"}
# The pipeline tells the notebook it executes which stage it runs for it ("<run dir>::<stage key>"); a stage
# notebook that does not find its own key there was run by hand.
PIPELINE_STAGE_ENV = "RFT_PIPELINE_STAGE"


def stage_key(section: str, iteration: int) -> str:
    """run.json's key of a stage: iter_01/01_sample for the sample section in iteration 1."""
    return f"iter_{iteration:02d}/{STAGE_NOTEBOOKS[section]}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def differences(old: dict, new: dict, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from differences(a, b, f"{prefix}{key}.")
        elif a != b:
            yield f"{prefix}{key}", a, b


def config_changes(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ, as 'key: old -> new'."""
    return [f"{key}: {a!r} -> {b!r}" for key, a, b in differences(old, new)]


class Run:
    """A run directory and its resolved config. Paths only: nothing here loads a model."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir).resolve()
        state = read_state(self.dir / RUN_FILE)
        self.config: RunConfig = config_from_dict(state["config"], str(self.dir / RUN_FILE))

    # -- creation -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, config: RunConfig, run_dir: str | Path) -> "Run":
        """Write run.json first, then the data and the scratch model; a second call with the same config reuses it."""
        run_dir = Path(run_dir).resolve()
        state_path = run_dir / RUN_FILE
        if state_path.exists():
            state = read_state(state_path)
            # Re-validated, so settings added to the toolkit since (with their defaults) do not count as changes.
            old = config_from_dict(state["config"], str(state_path)).model_dump(mode="json")
            new = config.model_dump(mode="json")
            changes = [c for c in config_changes(old, new) if c.split(":")[0] not in _EXTENDABLE]
            finished = [key for key, info in state["stages"].items() if info.get("status") == "done"]
            if changes and finished:
                raise ConfigError(
                    f"{state_path}: parameters differ from the finished run's ({'; '.join(changes)}); "
                    "revert them or use another --output-dir"
                )
            if changes:  # no stage has finished (say the dataset failed to load): the corrected recipe takes over
                logger.warning("%s: no stage had finished; starting over with the new parameters (%s)", run_dir,
                               "; ".join(changes))
                # what the old parameters made: the data, the scratch model, the first stage's partial work
                for made in [run_dir / "data", run_dir / "base_model", *run_dir.glob("iter_*")]:
                    shutil.rmtree(made, ignore_errors=True)
            if new["iterations"] < old["iterations"]:
                logger.warning("%s: iterations lowered from %d to %d: the run ends at iteration %d; the files of "
                               "later iterations stay on disk", run_dir, old["iterations"], new["iterations"],
                               new["iterations"])
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
        if not (self.data_dir / LENGTH_CHECK).exists():
            self.check_prompt_lengths()

    def check_prompt_lengths(self) -> dict:
        """Questions whose prompt and longest answer (sample or eval max_new_tokens) do not fit the model's context:
        skipped from the splits (task.too_long: skip; counted in data/prompt_lengths.json and iteration 0's
        metrics) or refused naming the row (error). A model without a stated context is not checked."""
        from transformers import AutoConfig

        from .models import load_tokenizer
        from .sampling.base import encode_chat

        try:
            context = getattr(AutoConfig.from_pretrained(self.base_model), "max_position_embeddings", None)
        except OSError as e:  # a hub id this machine cannot reach: the stages will say so when they load it
            logger.warning("%s: prompt lengths not checked (cannot read the model's config: %s)", self.base_model,
                           str(e).splitlines()[0][:120])
            return {}
        room = max([self.config.eval.max_new_tokens, *(self.config.at_iteration(i).sample.max_new_tokens
                                                        for i in self.config.iterations_with_settings())])
        report: dict = {"context": context, "room_for_answer": room, "skipped": {}}
        if context:
            tokenizer = load_tokenizer(self.base_model)
            for split in ("train", "test", "seed"):
                path = self.data_dir / f"{split}.jsonl"
                if not path.exists():
                    continue
                rows = read_jsonl(path)
                if not rows:
                    continue
                lengths = [len(ids) for ids in encode_chat(tokenizer, [build_prompt(r["question"], self.system_prompt)
                                                                       for r in rows])]
                long = [(row, n) for row, n in zip(rows, lengths) if n + room > context]
                if long and self.config.task.too_long == "error":
                    row, n = long[0]
                    raise ConfigError(f"task.{'train' if split == 'seed' else split}: question {row['id']} is {n:,} "
                                      f"prompt tokens; with {room} for the answer it exceeds the model's context "
                                      f"of {context:,} (task.too_long: skip leaves such rows out)")
                if long:
                    kept = [row for row, n in zip(rows, lengths) if n + room <= context]
                    write_jsonl(path, kept)
                    report["skipped"][split] = len(long)
                    logger.warning("%s: skipped %d of %d questions longer than the model's context (%d tokens, "
                                   "%d of them kept for the answer)", path, len(long), len(rows), context, room)
        write_json(self.data_dir / LENGTH_CHECK, report)
        if report["skipped"]:
            self.update_metrics(0, "data", {"too_long_skipped": report["skipped"]})
        return report

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
        """Where the run's starting weights live: the built scratch folder, the converted GGUF, or the hub id or
        folder the config names."""
        model = self.config.model
        if model.is_scratch:
            return str(self.base_model_dir)
        if model.gguf_file:
            return str(converted_dir(resolve_folder(model.name_or_path) / model.gguf_file))
        return model.name_or_path

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

    def prm_checkpoint(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "prm"

    def prm_model(self, iteration: int) -> str | None:
        """The PRM that iteration `iteration` scores with: the newest one trained at or before it (prm.model:
        trained), or the folder or hub id the config names; None without a PRM."""
        if not self.config.prm.trained:
            return self.config.prm.model
        for i in range(iteration, 0, -1):
            if is_checkpoint(self.prm_checkpoint(i)):
                return str(self.prm_checkpoint(i))
        return None

    def has_baseline(self, iteration: int) -> bool:
        """Whether a baseline has been trained by `iteration`."""
        return any(is_checkpoint(self.baseline_checkpoint(i)) for i in range(1, iteration + 1))

    def baseline_model(self, iteration: int) -> str:
        """The baseline continues from its own previous checkpoint (iteration 0's model at first)."""
        return self._latest(iteration - 1, lambda i: self.baseline_checkpoint(i) if i else self.checkpoint(0))

    def iteration_seed(self, iteration: int) -> int:
        """One seed per iteration: which questions are sampled, the engines and the samples."""
        return self.config.seed * 1000 + iteration

    @property
    def system_prompt(self) -> str | None:
        return read_system_prompt(self.config.task)

    # -- stage configs -------------------------------------------------------------------------------------
    def stage_config(self, section: str, iteration: int, values: Mapping[str, Any] | None = None) -> BaseModel:
        """What the stage of `section` runs with at `iteration`: the run's recipe (`RunConfig.stage_config`) with
        `values` on top, a notebook's parameters (its globals: the names of the stage config's fields; None keeps
        the recipe's value, a dict for a section replaces only the keys it names).

        Under the pipeline the values are the recipe's. A stage run by hand is recorded in run.json as running
        by hand, with `overrides`, the values that differ from the recipe's (so `rft run` and the report know
        what really ran); the stages after it that had finished are set to run again, since their inputs change."""
        recipe = self.config.stage_config(section, iteration)
        stage_class = type(recipe)
        merged = recipe.model_dump()
        for name, value in (values or {}).items():
            if name not in stage_class.model_fields or value is None:
                continue
            merged[name] = merged[name] | value if isinstance(value, dict) and isinstance(merged[name], dict) else value
        key = stage_key(section, iteration)
        try:
            config = stage_class.model_validate(merged)
        except ValidationError as e:
            raise ConfigError(format_validation_error(f"{key} parameters", e)) from None
        if not self.in_pipeline(key):
            overrides = {k: b for k, _, b in differences(recipe.model_dump(mode="json"), config.model_dump(mode="json"))}
            self._start_by_hand(key, overrides)
        return config

    def in_pipeline(self, key: str) -> bool:
        return os.environ.get(PIPELINE_STAGE_ENV) == f"{self.dir}::{key}"

    def _start_by_hand(self, key: str, overrides: dict) -> None:
        state = self.state()
        for later in [k for k, v in state["stages"].items() if _runs_after(k, key) and v.get("status") == "done"]:
            state["stages"][later] |= {"status": "pending", "stale": f"{key} was run again by hand"}
        state["stages"][key] = {"status": "running", "by_hand": True, "overrides": overrides, "pid": os.getpid(),
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "started_s": time.time()}
        write_json(self.dir / RUN_FILE, state)

    def finish_stage(self, section: str, iteration: int) -> None:
        """The last step of a stage: one started by hand (`stage_config` outside the pipeline) is done now. The
        pipeline records its own stages; a script that calls the steps with a config of its own records nothing."""
        key = stage_key(section, iteration)
        info = self.state()["stages"].get(key, {})
        if self.in_pipeline(key) or not info.get("by_hand") or "started_s" not in info:
            return
        self.set_stage(key, status="done", started_s=None, pid=None, seconds=round(time.time() - info["started_s"], 2))

    # -- state ------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return read_state(self.dir / RUN_FILE)

    def stage_status(self, key: str) -> str:
        """pending, running, done, failed; `interrupted` for a stage marked running whose process is gone (killed),
        `damaged` for a done stage whose recorded outputs are missing or changed (see `damage`)."""
        info = self.state()["stages"].get(key, {})
        status = info.get("status", "pending")
        if status == "running" and info.get("pid") and not _alive(info["pid"]):
            return "interrupted"
        if status == "done" and self.damage(key):
            return "damaged"
        return status

    # -- what a stage wrote --------------------------------------------------------------------------------
    def stage_folder(self, key: str) -> Path | None:
        return self.dir / key.partition("/")[0] if key.startswith("iter_") else None

    def snapshot(self, key: str) -> dict[str, tuple[int, int]]:
        """The stage's folder's files (size, modification time), before the stage runs."""
        folder = self.stage_folder(key)
        if folder is None or not folder.is_dir():
            return {}
        return {str(p.relative_to(self.dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in _output_files(folder)}

    def outputs_since(self, key: str, before: dict[str, tuple[int, int]]) -> dict[str, dict]:
        """The files the stage wrote (new or changed since `before`): size, and a checksum of the small ones."""
        outputs = {}
        for name, stamp in self.snapshot(key).items():
            if before.get(name) != stamp:
                path = self.dir / name
                outputs[name] = {"size": stamp[0],
                                 "sha256": _sha256(path) if stamp[0] <= CHECKSUM_LIMIT_BYTES else None}
        return outputs

    def damage(self, key: str) -> str | None:
        """What is wrong with a finished stage's recorded outputs (the first problem), or None when all is whole."""
        for name, recorded in self.state()["stages"].get(key, {}).get("outputs", {}).items():
            path = self.dir / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != recorded["size"]:
                return f"{name} is {path.stat().st_size:,} bytes, not the {recorded['size']:,} it was written with"
            if recorded.get("sha256") and _sha256(path) != recorded["sha256"]:
                return f"{name} changed since the stage wrote it"
        return None

    def set_stage(self, key: str, **fields) -> None:
        """Update a stage's entry in run.json; a field given as None is removed."""
        state = self.state()
        entry = {**state["stages"].get(key, {}), **fields}
        state["stages"][key] = {k: v for k, v in entry.items() if v is not None}
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

    def update_metrics(self, iteration: int, section: str, values, merge: bool = True) -> dict:
        """Merge `values` (a dict) into `section` of the iteration's metrics.json, or set the section to them
        (`merge=False`, or values that are not a dict)."""
        metrics = self.metrics(iteration)
        merging = merge and isinstance(values, dict) and isinstance(metrics.get(section), dict)
        metrics[section] = {**metrics[section], **values} if merging else values
        write_json(self.iter_dir(iteration) / "metrics.json", metrics)
        return metrics


CHECKSUM_LIMIT_BYTES = 4_000_000  # outputs up to this size get a checksum; larger ones (weights) their size


def _output_files(folder: Path) -> list[Path]:
    """A stage folder's result files: not the notebooks, metrics.json (every stage adds to it), hidden or
    partial files."""
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".ipynb" and p.name != "metrics.json"
            and not any(part.startswith(".") or part.endswith(".parts") for part in p.relative_to(folder).parts)]


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_state(path: Path) -> dict:
    """run.json, checked for the shape rft writes (an object with config and stages): anything else is one line."""
    state = read_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) \
            or not isinstance(state.get("stages"), dict):
        raise ConfigError(f"{path}: not a run.json written by rft (expected an object with 'config' and 'stages'); "
                          "restore it, or move the folder away and use another --output-dir")
    return state


def _runs_after(key: str, other: str) -> bool:
    """Whether stage `key` comes after stage `other` in a run: later in its iteration or in a later one, or the
    run's report (keys sort in run order within the iterations)."""
    return key != other and (not key.startswith("iter_") or key > other)
