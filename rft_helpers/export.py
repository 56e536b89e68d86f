"""`rft export RUN_DIR`: a run as a folder of static pages that opens offline in any browser.

    OUT/index.html                 the headline, the stage table (status, seconds, accuracy, a link to each page),
                                   accuracy per iteration and the report's plots
    OUT/06_report.html             the executed report
    OUT/iter_NN/<stage>.html       each executed stage notebook, with a bar naming its run and iteration

No page fetches anything (nbconvert's JupyterLab page without its CDN scripts: export_templates/rft_offline);
plots are embedded images. The run folder's checkpoints stay where they are: the export is a few MB.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from . import report
from .exceptions import ConfigError
from .io import atomic_write_text
from .paths import PACKAGE_DIR
from .pipeline import plan
from .progress import clean_notebook
from .run import RUN_FILE, Run

TEMPLATES_DIR = PACKAGE_DIR / "export_templates"
PAGE_LIMIT_BYTES = 1_000_000  # a page a reader opens at once


@dataclass
class Exported:
    index: Path
    pages: list[Path]
    oversized: list[Path]  # pages over PAGE_LIMIT_BYTES (a notebook with very large outputs)


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, no_input: bool = False) -> Exported:
    """Write the run's pages to `out_dir` (default RUN_DIR/export); `no_input` hides the code cells."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no {RUN_FILE}); give the folder `rft run` wrote")
    run = Run(run_dir)
    out = Path(out_dir) if out_dir else run.dir / "export"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file; give a folder")
    pages = []
    for stage in plan(run.config):
        notebook = stage.output_notebook(run)
        if not notebook.is_file():
            continue
        relative = notebook.relative_to(run.dir).with_suffix(".html")
        page = out / relative
        where = f"iteration {stage.iteration:02d} · " if stage.iteration is not None else ""
        up = "../" * (len(relative.parts) - 1)
        nav = (f'<a href="{up}index.html">← index</a> run <b>{html.escape(run.config.run_name)}</b> · '
               f"{where}{stage.name}")
        atomic_write_text(page, notebook_html(notebook, nav, no_input))
        pages.append(page)
    index = out / "index.html"
    atomic_write_text(index, index_html(run, out))
    every = [index, *pages]
    return Exported(index, pages, [p for p in every if p.stat().st_size > PAGE_LIMIT_BYTES])


def notebook_html(notebook: Path, nav: str, no_input: bool = False) -> str:
    """One executed notebook as an offline page, its progress bars at their final line, without widget state."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    clean_notebook(nb)
    exporter = HTMLExporter(template_name="rft_offline", extra_template_basedirs=[str(TEMPLATES_DIR)],
                            exclude_input=no_input, exclude_input_prompt=no_input, exclude_output_prompt=no_input)
    body, _ = exporter.from_notebook_node(nb, resources={"rft_nav": nav})
    return body


def _figure(plot, *args) -> str:
    """A report plot as an embedded PNG (empty when the plot has nothing to show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plot(*args)
    if ax is None:
        return ""
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(ax.figure)
    return f'<img alt="{html.escape(ax.get_title())}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def stage_rows(run: Run, out: Path) -> list[dict]:
    """One row per planned stage: status, seconds, the accuracy an evaluation measured, the page's link."""
    stages = run.state()["stages"]
    rows = []
    for stage in plan(run.config):
        info = stages.get(stage.key, {})
        page = out / stage.output_notebook(run).relative_to(run.dir).with_suffix(".html")
        accuracy = ""
        if stage.name == "05_evaluate" and "eval" in (metrics := run.metrics(stage.iteration)):
            accuracy = f"{100 * metrics['eval']['accuracy']:.1f}%"
            if "baseline_eval" in metrics:
                accuracy += f" (baseline {100 * metrics['baseline_eval']['accuracy']:.1f}%)"
        rows.append({"iteration": "–" if stage.iteration is None else f"{stage.iteration:02d}", "stage": stage.name,
                     "status": info.get("status", "pending"),
                     "seconds": f"{info['seconds']:.1f}" if "seconds" in info else "–", "accuracy": accuracy,
                     "link": page.relative_to(out).as_posix() if page.exists() else None})
    return rows


def index_html(run: Run, out: Path) -> str:
    import mistune

    summary = report.run_summary(run)
    table = report.accuracy_table(summary, report.HEADLINE_COLUMNS)
    accuracy = table.to_html() if hasattr(table, "to_html") else f"<p><i>{html.escape(table)}</i></p>"
    stage_table = "".join(
        f"<tr><td>{r['iteration']}</td><td>"
        + (f'<a href="{r["link"]}">{r["stage"]}</a>' if r["link"] else r["stage"])
        + f"</td><td class='{r['status']}'>{r['status']}</td><td>{r['seconds']}</td><td>{r['accuracy']}</td></tr>"
        for r in stage_rows(run, out))
    plots = "" if summary.empty else "".join(
        _figure(plot, summary) for plot in (report.plot_accuracy, report.plot_process, report.plot_kept))
    title = html.escape(f"RFT run {run.config.run_name}")
    report_link = (' (<a href="06_report.html">the report</a> has every table and plot)'
                   if (out / "06_report.html").exists() else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 9px; text-align: right; }}
td:nth-child(2) {{ text-align: left; }}
.done {{ color: #1a7f37; }} .failed {{ color: #cf222e; }} .running, .pending {{ color: #9a6700; }}
img {{ max-width: 48%; margin: 0.5em 1% 0 0; vertical-align: top; }}
.wide {{ overflow-x: auto; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="headline">{mistune.html(report.headline_markdown(run))}</div>
<h2>Accuracy per iteration</h2>
<div class="wide">{accuracy}</div>
<div class="plots">{plots}</div>
<h2>Stages</h2>
<p>Each executed notebook, as it ran{report_link}.</p>
<table><tr><th>iteration</th><th>stage</th><th>status</th><th>seconds</th><th>accuracy</th></tr>
{stage_table}</table>
<p><small>Run folder: {html.escape(str(run.dir))}</small></p>
</body></html>
"""
