"""Progress bars that read right everywhere: in JupyterLab, in a notebook papermill saved, and in its HTML export.

tqdm's notebook widgets vanish from a static page, and their saved text is the state they were displayed in
(`generate: 0%| | 0/8`, as if the stage had stalled). A text bar's saved output ends where the bar ended; the
pipeline folds its carriage-return updates into that last line (`clean_notebook`)."""

from __future__ import annotations

import re
import sys
from typing import Any, Iterable

from tqdm.std import tqdm

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Hugging Face libraries' own bars (datasets' Map, the hub's downloads, transformers' shard writes) are widgets in a
# kernel: the pipeline's stage kernels start with these set, so executed notebooks carry none.
QUIET_LIBRARY_BARS = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
_OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")  # a line that a later carriage return overwrote


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """tqdm as text on stdout, updated at most every 2 s (so a long stage saves a few hundred updates, not
    thousands). Takes tqdm's arguments (desc, total, disable, ...)."""
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("file", sys.stdout)
    kwargs.setdefault("ncols", 100)
    return tqdm(iterable, **kwargs)


def final_text(text: str) -> str:
    """Stream text as a terminal would show it: each line as its last carriage-return update left it."""
    return _OVERWRITTEN.sub("", text)


def clean_notebook(nb) -> bool:
    """In place, on an executed notebook (nbformat): merge each cell's consecutive stream outputs of the same name,
    keep each bar's final line, and drop widget views (their saved text is stale) and the widget state. True when
    anything changed."""
    changed = bool(nb.metadata.pop("widgets", None))
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") in ("display_data", "execute_result") and WIDGET_VIEW in output.get("data", {}):
                changed = True
                continue
            previous = outputs[-1] if outputs else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
                previous["text"] += output["text"]
                changed = True
                continue
            outputs.append(output)
        for output in outputs:
            if output.get("output_type") == "stream" and "\r" in output["text"]:
                output["text"] = final_text(output["text"])
                changed = True
        cell.outputs = outputs
    return changed


def quiet_trainer_progress(trainer, desc: str = "train") -> None:
    """Give a transformers Trainer one text bar over its optimizer steps instead of its notebook callback, which
    prints a table row per logged step (every step here: the loss plot shows them) and saves as a widget."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback
    from transformers.utils.notebook import NotebookProgressCallback

    class StepBar(TrainerCallback):
        bar: tqdm | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress(total=state.max_steps, initial=state.global_step, desc=desc)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    for callback in (NotebookProgressCallback, ProgressCallback, PrinterCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(StepBar())
