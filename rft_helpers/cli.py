"""`rft`: run, resume and inspect RFT runs.

    rft run params/demo.yaml [--output-dir DIR] [--iterations N] [--set sample.temperature=0.9 ...]
    rft status outputs/demo
    rft validate params/demo.yaml [--set ...]
    rft export outputs/demo [--out DIR] [--no-input]
    rft serve outputs/demo [--port 8000] [--name NAME] [-- VLLM_ARGS ...]

A recipe that is not a file here but names one shipped with the package (`demo`, `params/demo.yaml`) is that one,
so an installed wheel runs `rft run params/demo.yaml` from any folder.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from .exceptions import ConfigError, RFTError


def recipe_path(name: str) -> Path:
    """The recipe file `name` names: a file here, else the packaged recipe of that name."""
    from .exceptions import ConfigError
    from .paths import packaged_recipe, packaged_recipes

    path = Path(name)
    if path.is_file():
        return path
    packaged = packaged_recipe(name)
    if packaged is None:
        raise ConfigError(f"{name}: params file not found (recipes shipped with rft: {', '.join(packaged_recipes())})")
    return packaged


def _config_from_args(args):
    from . import preflight
    from .recipes import load_config

    overrides = list(args.set or [])
    if getattr(args, "iterations", None) is not None:
        overrides.append(f"iterations={args.iterations}")
    if getattr(args, "output_dir", None):
        overrides.append(f"output_dir={args.output_dir}")
    config = load_config(recipe_path(args.params), overrides)
    preflight.check(config)
    for line in preflight.advice(config):
        print(f"note: {line}", file=sys.stderr)
    return config


def cmd_run(args) -> int:
    from .pipeline import run_pipeline

    config = _config_from_args(args)
    run_dir = config.resolved_output_dir()
    print(f"run {config.run_name} ({recipe_path(args.params)}) -> {run_dir}")
    run = run_pipeline(config, run_dir, redo=args.redo or [])
    print(format_status(run.dir))
    return 0


def cmd_validate(args) -> int:
    config = _config_from_args(args)
    print(f"{args.params}: ok (run {config.run_name}, {config.iterations} iterations, output {config.resolved_output_dir()})")
    return 0


def format_status(run_dir: Path) -> str:
    from .pipeline import by_hand_note, plan
    from .run import Run

    if not (Path(run_dir) / "run.json").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no run.json); give the folder `rft run` wrote")
    run = Run(run_dir)
    stages = run.state()["stages"]
    lines = [f"{'iteration':<10}{'stage':<14}{'status':<12}{'seconds':>8}  accuracy"]
    for stage in plan(run.config):
        info = stages.get(stage.key, {})
        status = run.stage_status(stage.key)
        accuracy = ""
        if stage.name == "05_evaluate" and stage.iteration is not None:
            metrics = run.metrics(stage.iteration)
            if isinstance(metrics.get("eval", {}).get("accuracy"), (int, float)):
                accuracy = f"{metrics['eval']['accuracy']:.3f}"
                if isinstance(metrics.get("baseline_eval", {}).get("accuracy"), (int, float)):
                    accuracy += f" (baseline {metrics['baseline_eval']['accuracy']:.3f})"
            elif status == "done":
                accuracy = "(no accuracy in metrics.json)"
        iteration = "-" if stage.iteration is None else f"{stage.iteration:02d}"
        seconds = f"{info['seconds']:.1f}" if "seconds" in info else ""
        line = f"{iteration:<10}{stage.name:<14}{status:<12}{seconds:>8}  {accuracy}"
        line += f"  error: {info['error']}" if status == "failed" else ""
        line += f"  {run.damage(stage.key)}: rft run --redo {stage.key} repairs it" if status == "damaged" else ""
        line += "  (its process is gone: rft run resumes it)" if status == "interrupted" else ""
        lines.append(line + ("  (" + by_hand_note(info).removeprefix(", ") + ")" if info.get("by_hand") else ""))
    best = run.state().get("best")
    if best:
        lines.append(f"best: iteration {best['iteration']:02d}, accuracy {best['accuracy']:.3f} ({run.best_link})")
    return "\n".join(lines)


def cmd_status(args) -> int:
    print(format_status(Path(args.run_dir)))
    return 0


def cmd_export(args) -> int:
    from .export import PAGE_LIMIT_BYTES, export_run

    exported = export_run(args.run_dir, args.out, args.no_input)
    print(f"exported {len(exported.pages)} notebooks -> {exported.index} (opens offline in a browser)")
    for page in exported.oversized:
        print(f"warning: {page} is {page.stat().st_size / 1e6:.1f} MB (over {PAGE_LIMIT_BYTES / 1e6:.0f} MB): "
              "a notebook with very large outputs", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    return serve(args.target, port=args.port, host=args.host, name=args.name, log=args.log, wait_s=args.wait_s,
                 extra=args.vllm_args, say=lambda line: print(line, flush=True))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rft", description="Reinforcement fine-tuning runs driven by notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_params(p):
        p.add_argument("params", help="YAML parameter file (see rft_helpers/config.py for every key)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter, e.g. sample.n=4")
        return p

    run = with_params(sub.add_parser("run", help="run or resume an RFT run"))
    run.add_argument("--output-dir", help="run folder (default outputs/<run_name>)")
    run.add_argument("--iterations", type=int, help="number of RFT iterations after iteration 0")
    run.add_argument("--redo", action="append", metavar="STAGE",
                     help="run a finished stage again, e.g. iter_01/04_train (one that rft status says is damaged)")
    run.set_defaults(func=cmd_run)
    with_params(sub.add_parser("validate", help="check a parameter file without running")).set_defaults(func=cmd_validate)
    status = sub.add_parser("status", help="per iteration and stage: done / failed / pending, and accuracy")
    status.add_argument("run_dir")
    status.set_defaults(func=cmd_status)
    export = sub.add_parser("export", help="the run as static pages that open offline: index.html and every notebook")
    export.add_argument("run_dir")
    export.add_argument("--out", help="folder to write (default RUN_DIR/export)")
    export.add_argument("--no-input", action="store_true", help="hide the code cells: outputs and markdown only")
    export.set_defaults(func=cmd_export)
    serve = sub.add_parser("serve", help="vLLM's OpenAI-compatible server for a checkpoint (a run folder: its best)",
                           description="Start vLLM's own OpenAI-compatible server for a checkpoint, wait until it "
                                       "answers, print the base_url and model name for a recipe, and stop it with "
                                       "all its processes on Ctrl-C. Arguments after -- go to vLLM's server, "
                                       "e.g. rft serve outputs/demo -- --enforce-eager --max-model-len 512.")
    serve.add_argument("target", help="a checkpoint folder, or a run folder (its best checkpoint)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--name", help="served model name, openai.model in a recipe (default: the run's name)")
    serve.add_argument("--log", help="the server's log file (default: rft-serve-PORT.log in the temp folder)")
    serve.add_argument("--wait-s", type=float, default=900.0, help="seconds to wait for the server to answer")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed_on = argv[argv.index("--") + 1:] if "--" in argv else []  # rft serve's arguments for vLLM
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = make_parser()
    args = parser.parse_args(argv)
    if passed_on and args.command != "serve":
        parser.error("arguments after -- are for rft serve (vLLM's server) only")
    args.vllm_args = passed_on
    try:
        return args.func(args)
    except RFTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder that cannot be written: the run folder stays resumable
        if e.errno == errno.ENOSPC:
            print(f"error: no space left on the device{f' writing {e.filename}' if e.filename else ''}; free some "
                  "and run the same command again (finished stages and chunks are kept)", file=sys.stderr)
        else:
            print(f"error: {e.filename or 'a file'}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run `rft run` again on the same folder to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
