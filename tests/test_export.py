"""Reports people share: clean stage pages, the tracker's files, and `rft export` opened in headless Chromium."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from rft_helpers.export import PAGE_LIMIT_BYTES, export_run
from rft_helpers.pipeline import plan
from rft_helpers.progress import WIDGET_VIEW, clean_notebook, final_text
from rft_helpers.tracking import tensorboard_scalars

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_saved_progress_bars_end_where_they_ended_and_widgets_go():
    assert final_text("\rgen:   0%|  | 0/8\rgen:  50%|# | 4/8\rgen: 100%|##| 8/8\n") == "gen: 100%|##| 8/8\n"
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"state": {}}})
    cell = nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "m"}, "text/plain": "gen: 0%| | 0/8"}),
        nbformat.v4.new_output("stream", name="stdout", text="\rtrain:   0%| | 0/4"),
        nbformat.v4.new_output("stream", name="stdout", text="\rtrain: 100%|#| 4/4\ndone\n"),
    ])
    nb.cells.append(cell)
    assert clean_notebook(nb) and "widgets" not in nb.metadata
    assert [o["output_type"] for o in cell.outputs] == ["stream"]
    assert cell.outputs[0]["text"] == "train: 100%|#| 4/4\ndone\n"
    assert not clean_notebook(nb)  # already clean


def _outputs(notebook: Path) -> list[dict]:
    return [o for c in nbformat.read(notebook, as_version=4).cells for o in c.get("outputs", [])]


@pytest.mark.slow
def test_stage_pages_have_final_bars_no_widgets_and_no_per_step_tables(smoke_run):
    notebooks = [s.output_notebook(smoke_run) for s in plan(smoke_run.config)]
    for notebook in notebooks:
        nb = nbformat.read(notebook, as_version=4)
        assert "widgets" not in nb.metadata, notebook
        for output in _outputs(notebook):
            assert WIDGET_VIEW not in output.get("data", {}), notebook
            assert "\r" not in output.get("text", ""), notebook
    warmup = json.dumps(_outputs(smoke_run.iter_dir(0) / "04_train.ipynb"), ensure_ascii=False)
    assert "warm-up: 100%" in warmup  # the trainer's bar, at its end
    assert "Training Loss" not in warmup and "<th>Step</th>" not in warmup  # no table row per step
    first_page = json.dumps(_outputs(smoke_run.iter_dir(1) / "01_sample.ipynb"), ensure_ascii=False)
    assert f"run smoke · iteration 01 · 01_sample · {smoke_run.dir}" in first_page  # a page says what it is
    train_page = json.dumps(_outputs(smoke_run.iter_dir(1) / "04_train.ipynb"), ensure_ascii=False)
    assert "Nothing was trained" in train_page or "Over " in train_page  # the loss line reads the numbers


@pytest.mark.slow
def test_rft_run_prints_each_evaluations_accuracy_and_the_time_left(smoke_run):
    done = [line for line in smoke_run.log_lines if line.startswith("[done] iter_01/05_evaluate")]
    accuracy = smoke_run.metrics(1)["eval"]["accuracy"]
    baseline = smoke_run.metrics(1)["baseline_eval"]["accuracy"]
    assert len(done) == 1 and f": accuracy {accuracy:.3f} (baseline {baseline:.3f})" in done[0]
    assert " elapsed, about " in done[0] and done[0].endswith(" left")
    assert smoke_run.log_lines[-1].startswith("[done] 06_report") and smoke_run.log_lines[-1].endswith(" elapsed")


@pytest.mark.slow
def test_tensorboard_holds_the_trainers_losses_and_each_iterations_accuracy(smoke_run):
    pipeline = tensorboard_scalars(smoke_run.dir / "tensorboard" / "rft")
    assert pipeline["eval/accuracy"] == [(i, pytest.approx(smoke_run.metrics(i)["eval"]["accuracy"]))
                                         for i in range(smoke_run.config.iterations + 1)]
    warmup = tensorboard_scalars(smoke_run.dir / "tensorboard" / "iter_00" / "warmup")
    assert len(warmup["train/loss"]) == smoke_run.config.warmup.max_steps


def _pages(out: Path) -> list[Path]:
    return sorted(out.rglob("*.html"))


@pytest.mark.slow
def test_export_writes_offline_pages_that_link_to_each_other(smoke_run, tmp_path):
    exported = export_run(smoke_run.dir, tmp_path / "site")
    executed = [s for s in plan(smoke_run.config) if s.output_notebook(smoke_run).exists()]
    assert len(exported.pages) == len(executed) and exported.oversized == []
    index = exported.index.read_text()
    for page in exported.pages:
        text = page.read_text()
        assert page.stat().st_size < PAGE_LIMIT_BYTES
        fetched = re.findall(r'<script[^>]* src=|src="https?:|href="https?:[^"]*\.(?:css|js)"', text)
        assert fetched == [], (page, fetched)
        assert "run <b>smoke</b>" in text and 'index.html">← index</a>' in text
        assert f'href="{page.relative_to(exported.index.parent).as_posix()}"' in index
    assert "iteration 01 · 04_train" in (tmp_path / "site" / "iter_01" / "04_train.html").read_text()
    final = smoke_run.metrics(1)["eval"]["accuracy"]
    assert f"Test accuracy <strong>{100 * final:.1f}%</strong> at iteration 1" in index
    hidden = export_run(smoke_run.dir, tmp_path / "no-input", no_input=True)
    assert "ensure_ready" in (tmp_path / "site" / "06_report.html").read_text()
    assert "ensure_ready" not in (hidden.index.parent / "06_report.html").read_text()


def test_export_of_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rft_helpers.cli", "export", str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {tmp_path}: not a run folder (no run.json); " \
                                                          "give the folder `rft run` wrote"


def open_in_chromium(pages: list[Path], screenshots: Path | None = None) -> list[dict]:
    """Each page opened from disk in headless Chromium (Playwright driving Debian's chromium): what it asked for
    off the machine (refused), its console errors, whether every image loaded, how much of its screenshot is
    not background, and its text."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        for page_path in pages:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            outside, errors = [], []
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                       else (outside.append(route.request.url), route.abort()))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            shot = page.screenshot(full_page=False)
            if screenshots is not None:
                (screenshots / f"{page_path.stem}.png").write_bytes(shot)
            pixels = Image.open(io.BytesIO(shot)).convert("L")
            inked = sum(pixels.histogram()[:200]) / (pixels.width * pixels.height)  # share of pixels not near-white
            results.append({"page": page_path, "outside": outside, "errors": errors, "images": images,
                            "inked": inked, "text": page.inner_text("body")})
            page.close()
        browser.close()
    return results


@pytest.mark.slow
def test_exported_pages_render_offline_in_headless_chromium(smoke_run, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make setup-browser installs it with apt-get)")
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[test]')")
    exported = export_run(smoke_run.dir, tmp_path / "site")
    stage_page = tmp_path / "site" / "iter_01" / "04_train.html"
    index, stage = open_in_chromium([exported.index, stage_page])
    for result in (index, stage):
        assert result["outside"] == [] and result["errors"] == [], result["page"]
        assert result["images"] and all(result["images"]), result["page"]  # every plot loads
        assert result["inked"] > 0.01, result["page"]  # not a blank page
    final, start = smoke_run.metrics(1)["eval"]["accuracy"], smoke_run.metrics(0)["eval"]["accuracy"]
    assert f"Test accuracy {100 * final:.1f}% at iteration 1, from {100 * start:.1f}% at iteration 0" in index["text"]
    assert "run smoke · iteration 01 · 04_train" in stage["text"]
