"""One function per stage: what each notebook runs. Each reads its inputs from the run directory, writes its
outputs there (atomically) and records its numbers in the iteration's metrics.json."""

from __future__ import annotations

import random
import time

from .config import EvalConfig, EvalSetConfig, FilterConfig, SampleConfig, TrainConfig
from .data import build_prompt, load_split, seed_examples
from .evaluate import accuracy_summary, greedy_predictions, sampled_predictions, sampled_summary, solution_loss
from .filters import apply_filters, build_train_set, filter_summary, score_samples
from .io import read_jsonl, write_jsonl
from .models import load_model, load_tokenizer
from .rewards import get_reward
from .run import Run
from .sampling import SamplingParams, get_engine
from .train import sft_train


def questions_for(run: Run, iteration: int, num_questions: int | None) -> list[dict]:
    """The training questions sampled in this iteration: all, or a fresh seeded subset each iteration."""
    rows = load_split(run.data_dir, "train")
    if num_questions is None or num_questions >= len(rows):
        return rows
    return random.Random(run.iteration_seed(iteration)).sample(rows, num_questions)


def engine_options(run: Run, batch_size: int, iteration: int) -> dict:
    """What every engine is built with: the run's dtype and seed, plus the vLLM settings (ignored by others)."""
    return run.config.vllm.model_dump() | {"dtype": run.config.model.dtype, "batch_size": batch_size,
                                           "seed": run.iteration_seed(iteration)}


def sample_stage(run: Run, iteration: int, config: SampleConfig, progress: bool = True) -> list[dict]:
    """01_sample: n completions per question from the current policy -> samples.jsonl."""
    model_path = run.policy_model(iteration)
    engine = get_engine(config.engine, model_path, **engine_options(run, config.batch_size, iteration))
    questions = questions_for(run, iteration, config.num_questions)
    prompts = [build_prompt(q["question"], run.system_prompt) for q in questions]
    params = SamplingParams(n=config.n, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, seed=run.iteration_seed(iteration))
    start = time.perf_counter()
    outputs = engine.generate(prompts, params, progress=progress)
    seconds = time.perf_counter() - start
    engine.close()
    rows = [
        {"id": q["id"], "sample_index": k, "prompt": prompt, "completion": c.text, "answer": q["answer"],
         "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason,
         "sampling": params.as_record() | {"engine": config.engine, "model": model_path}}
        for q, prompt, completions in zip(questions, prompts, outputs) for k, c in enumerate(completions)
    ]
    write_jsonl(run.iter_dir(iteration) / "samples.jsonl", rows)
    tokens = sum(r["completion_tokens"] for r in rows)
    run.update_metrics(iteration, "sampling", {
        "questions": len(questions), "samples": len(rows), "completion_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None, "seconds": round(seconds, 2),
        "temperature": config.temperature, "top_p": config.top_p, "n": config.n, "model": model_path,
    })
    return rows


def filter_stage(run: Run, iteration: int, config: FilterConfig) -> list[dict]:
    """02_filter: score with the reward, keep the good samples -> scored.jsonl and train.jsonl."""
    samples = read_jsonl(run.iter_dir(iteration) / "samples.jsonl")
    scored = apply_filters(score_samples(samples, get_reward(config.reward), config.reward), config)
    write_jsonl(run.iter_dir(iteration) / "scored.jsonl", scored)
    write_jsonl(run.iter_dir(iteration) / "train.jsonl", build_train_set(scored))
    run.update_metrics(iteration, "filter", filter_summary(scored, config.reward))
    return scored


def train_stage(run: Run, iteration: int, config: TrainConfig) -> dict:
    """03_train: iteration 0 warms the base model up on the seed set; later iterations train on train.jsonl and,
    when asked, train the baseline (plain SFT on the seed set) for the same number of optimizer steps."""
    seed_set = seed_examples(load_split(run.data_dir, "seed"), run.system_prompt)
    common = dict(learning_rate=config.learning_rate, batch_size=config.batch_size, seed=run.config.seed + iteration,
                  bf16=config.bf16, gradient_checkpointing=config.gradient_checkpointing)
    if iteration == 0:
        result = sft_train(run.base_model, seed_set, run.checkpoint(0), max_steps=config.max_steps, **common)
        return run.update_metrics(0, "train", {"mode": "warmup", "init": run.base_model, **result.summary})["train"]

    init = run.policy_model(iteration) if config.init == "previous" else run.start_model()
    examples = read_jsonl(run.iter_dir(iteration) / "train.jsonl")
    if not examples:  # nothing kept: the model stays as it is, and the next stages use the newest checkpoint
        return run.update_metrics(iteration, "train", {"mode": "skipped", "reason": "no kept samples", "steps": 0})["train"]
    mixed = seed_set if config.mix_seed else []
    result = sft_train(init, examples + mixed, run.checkpoint(iteration), num_epochs=config.num_epochs,
                       max_steps=config.max_steps, **common)
    summary = {"mode": "sft", "init": init, **result.summary, "kept_examples": len(examples),
               "seed_examples": len(mixed), "loss_history": result.loss_history}
    if config.baseline:
        baseline = sft_train(run.baseline_model(iteration), seed_set, run.baseline_checkpoint(iteration),
                             max_steps=result.steps, **common)
        summary["baseline"] = baseline.summary
    return run.update_metrics(iteration, "train", summary)["train"]


def evaluate_stage(run: Run, iteration: int, config: EvalConfig, progress: bool = True) -> dict:
    """04_evaluate: greedy pass@1 of this iteration's model (and the baseline's) on the test split."""
    test = load_split(run.data_dir, "test", config.num_questions)
    models = {"eval": run.policy_model(iteration + 1)}  # this iteration's checkpoint, or the newest before it
    if iteration > 0 and run.config.train.baseline:
        models["baseline_eval"] = run.baseline_model(iteration + 1)
    results = {}
    second = config.second_set
    check_second = second is not None and (second.every_iteration or iteration in (0, run.config.iterations))
    for section, path in models.items():
        engine = get_engine(config.engine, path, **engine_options(run, config.batch_size, iteration))
        start = time.perf_counter()
        predictions = greedy_predictions(engine, test, run.system_prompt, config.max_new_tokens, progress=progress)
        summary = accuracy_summary(predictions) | {"model": path, "seconds": round(time.perf_counter() - start, 2)}
        prefix = "" if section == "eval" else "baseline_"
        write_jsonl(run.iter_dir(iteration) / f"{prefix}predictions.jsonl", predictions)
        if config.samples:
            params = SamplingParams(n=config.samples, temperature=config.temperature, top_p=config.top_p,
                                    max_new_tokens=config.max_new_tokens, seed=run.iteration_seed(iteration))
            sampled = sampled_predictions(engine, test, run.system_prompt, params, progress=progress)
            write_jsonl(run.iter_dir(iteration) / f"{prefix}sampled_predictions.jsonl", sampled)
            summary |= sampled_summary(sampled) | {"seconds": round(time.perf_counter() - start, 2)}
        results[section] = run.update_metrics(iteration, section, summary)[section]
        if check_second:
            key = f"{section}_{second.name}"
            results[key] = run.update_metrics(iteration, key, evaluate_second_set(run, engine, path, second, iteration,
                                                                                 prefix, progress))[key]
        engine.close()
    if iteration == 0:  # RFT and the baseline start from the same model
        for key in [k for k in results if k.startswith("eval")]:
            results[f"baseline_{key}"] = run.update_metrics(0, f"baseline_{key}", results[key])[f"baseline_{key}"]
    return results


def evaluate_second_set(run: Run, engine, model_path: str, config: EvalSetConfig, iteration: int, prefix: str,
                        progress: bool) -> dict:
    """Greedy accuracy and reference-solution loss on the second set (forgetting shows as a rising loss)."""
    rows, system_prompt = run.second_set(), run.second_set_system_prompt
    start = time.perf_counter()
    predictions = greedy_predictions(engine, rows, system_prompt, config.max_new_tokens, progress=progress)
    write_jsonl(run.iter_dir(iteration) / f"{prefix}predictions_{config.name}.jsonl", predictions)
    model = getattr(engine, "model", None) or load_model(model_path, run.config.model.dtype)  # vLLM holds none
    loss = solution_loss(model, load_tokenizer(model_path), rows, system_prompt, batch_size=16)
    return accuracy_summary(predictions) | {"solution_loss": None if loss is None else round(loss, 4),
                                            "model": model_path, "seconds": round(time.perf_counter() - start, 2)}
