"""One function per stage: what each notebook runs. Each reads its inputs from the run directory, writes its
outputs there (atomically) and records its numbers in the iteration's metrics.json."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from tqdm.auto import tqdm

from . import train
from .config import EvalConfig, EvalSetConfig, FilterConfig, SampleConfig, TrainConfig
from .data import build_prompt, load_split, seed_examples
from .evaluate import accuracy_summary, greedy_predictions, sampled_predictions, sampled_summary, solution_loss
from .filters import apply_filters, balance_score, build_pairs, build_train_set, filter_summary, score_samples
from .io import read_jsonl, write_jsonl
from .launch import launch_training
from .models import load_model, load_tokenizer
from .rewards import get_reward
from .run import Run
from .sampling import SamplingParams, get_engine, resolve_engine
from .sampling.data_parallel import is_moe, sample_data_parallel
from .train import TrainResult, saved_steps


def questions_for(run: Run, iteration: int, num_questions: int | None) -> list[dict]:
    """The training questions sampled in this iteration: all, or a fresh seeded subset each iteration."""
    rows = load_split(run.data_dir, "train")
    if num_questions is None or num_questions >= len(rows):
        return rows
    return random.Random(run.iteration_seed(iteration)).sample(rows, num_questions)


def engine_options(run: Run, batch_size: int, iteration: int) -> dict:
    """What every engine is built with: the run's dtype and seed, plus the vLLM and openai settings (each engine
    ignores the others')."""
    return run.config.vllm.model_dump() | run.config.openai.engine_options() | {
        "dtype": run.config.model.dtype, "batch_size": batch_size, "seed": run.iteration_seed(iteration)}


def sample_stage(run: Run, iteration: int, config: SampleConfig, progress: bool = True) -> list[dict]:
    """01_sample: n completions per question from the current policy -> samples.jsonl. With temperature auto,
    a probe on a few questions picks the temperature first (see `choose_temperature`).

    Questions are sampled in chunks of `chunk_questions`, each written to samples.parts/ as it finishes; a stage
    that runs again after a crash samples only the chunks that are missing (with the same seeds, so the result is
    the one an uninterrupted run gives), then joins the chunks into samples.jsonl. With vLLM and
    `vllm.data_parallel_size` > 1, that many replicas share the chunks, one process each (see
    `sampling.data_parallel`)."""
    config = config.model_copy(update={"engine": resolve_engine(config.engine)})
    model_path = run.policy_model(iteration)
    chunks = question_chunks(run, iteration, config)
    parts_dir = run.iter_dir(iteration) / "samples.parts"
    parts = [parts_dir / f"{k:05d}.jsonl" for k in range(len(chunks))]
    todo = [k for k in range(len(chunks)) if not parts[k].exists()]  # the others were written before a crash
    resumed = sum(len(chunks[k]) for k in range(len(chunks)) if k not in todo)
    replicas = run.config.vllm.data_parallel_size if config.engine == "vllm" else 1
    engine = auto = ranks = None
    if replicas == 1 or config.temperature == "auto":
        engine = get_engine(config.engine, model_path, **engine_options(run, config.batch_size, iteration))
    start = time.perf_counter()
    if config.temperature == "auto":
        auto = choose_temperature(run, iteration, engine, [q for c in chunks for q in c], config, progress)
        config = config.model_copy(update={"temperature": auto["temperature"]})
    if replicas > 1:
        if engine is not None:
            engine.close()  # the probe's replica frees its GPUs for the data-parallel ones
        bar = tqdm(total=len(todo), desc=f"chunks on {replicas} vLLM replicas", disable=not progress)
        ranks = sample_data_parallel(run.dir, iteration, config.model_dump(mode="json"), todo, parts_dir,
                                     replicas, run.config.vllm.tensor_parallel_size, is_moe(model_path),
                                     lambda k: bar.update()) if todo else []  # all resumed: start no replica
        bar.close()
        sampled_tokens = sum(r["completion_tokens"] for r in ranks)
        generation_seconds = max((r["seconds"] for r in ranks), default=0)
        model_name, usage = model_path, None
    else:
        sampled_tokens = sum(sample_chunk(run, iteration, config, engine, k, chunks[k], parts[k], progress)
                             for k in todo)
        generation_seconds = time.perf_counter() - start
        model_name, usage = getattr(engine, "model_name", model_path), getattr(engine, "usage", None)
        engine.close()
    seconds = time.perf_counter() - start
    rows = [row for path in parts for row in read_jsonl(path)]
    write_jsonl(run.iter_dir(iteration) / "samples.jsonl", rows)
    shutil.rmtree(parts_dir, ignore_errors=True)
    run.update_metrics(iteration, "sampling", {
        "questions": sum(map(len, chunks)), "samples": len(rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "tokens_per_s": round(sampled_tokens / generation_seconds, 1) if generation_seconds else None,
        "seconds": round(seconds, 2), "engine": config.engine,
        "temperature": config.temperature, "top_p": config.top_p, "n": config.n, "model": model_name,
    } | ({"resumed_questions": resumed} if resumed else {}) | ({"auto_temperature": auto} if auto else {})
      | ({"usage": usage | run.config.openai.cost(usage)} if usage else {})
      | ({"data_parallel": {"replicas": replicas, "ranks": ranks}} if ranks else {}))
    return rows


def question_chunks(run: Run, iteration: int, config: SampleConfig) -> list[list[dict]]:
    """This iteration's questions in chunks of `chunk_questions`: the unit written, resumed and shared out."""
    questions = questions_for(run, iteration, config.num_questions)
    return [questions[i:i + config.chunk_questions] for i in range(0, len(questions), config.chunk_questions)]


def sample_chunk(run: Run, iteration: int, config: SampleConfig, engine, k: int, chunk: list[dict], path: Path,
                 progress: bool) -> int:
    """Sample chunk k (its seed depends on k only, so where and when it runs does not change it) and write it to
    `path`; returns its completion tokens."""
    params = SamplingParams(n=config.n, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, seed=run.iteration_seed(iteration) + 100_003 * k)
    rows = sample_rows(engine, chunk, run.system_prompt, params, progress)
    for row in rows:
        row["sampling"] |= {"engine": engine.name, "model": getattr(engine, "model_name", run.policy_model(iteration))}
    write_jsonl(path, rows)
    return sum(r["completion_tokens"] for r in rows)


def sample_rows(engine, questions: list[dict], system_prompt: str | None, params: SamplingParams,
                progress: bool) -> list[dict]:
    """`params.n` samples per question, as samples.jsonl rows."""
    prompts = [build_prompt(q["question"], system_prompt) for q in questions]
    outputs = engine.generate(prompts, params, progress=progress)
    return [
        {"id": q["id"], "sample_index": k, "prompt": prompt, "completion": c.text, "answer": q["answer"],
         "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason,
         "sampling": params.as_record()}
        for q, prompt, completions in zip(questions, prompts, outputs) for k, c in enumerate(completions)
    ]


def choose_temperature(run: Run, iteration: int, engine, questions: list[dict], config: SampleConfig,
                       progress: bool) -> dict:
    """B-STaR's automatic temperature: sample the first `auto_questions` questions at each candidate temperature,
    score them with this iteration's filter, and keep the temperature with the best balance score (ties: the
    lower one). The probe costs len(auto_temperatures) * auto_questions * n extra samples."""
    filter_config = run.config.at_iteration(iteration).filter
    reward = get_reward(filter_config.reward)
    probe = questions[:config.auto_questions]
    scores = {}
    for temperature in sorted(config.auto_temperatures):
        params = SamplingParams(n=config.n, temperature=temperature, top_p=config.top_p,
                                max_new_tokens=config.max_new_tokens, seed=run.iteration_seed(iteration) + 7919)
        rows = score_samples(sample_rows(engine, probe, run.system_prompt, params, progress), reward,
                             filter_config.reward)
        scores[temperature] = round(balance_score(rows, filter_config, config.auto_target_correct), 4)
    best = max(scores, key=lambda t: (scores[t], -t))
    return {"temperature": best, "balance_scores": {str(t): s for t, s in scores.items()},
            "probe_questions": len(probe)}


def filter_stage(run: Run, iteration: int, config: FilterConfig) -> list[dict]:
    """02_filter: score with the reward, keep the good samples -> scored.jsonl and train.jsonl."""
    samples = read_jsonl(run.iter_dir(iteration) / "samples.jsonl")
    scored = apply_filters(score_samples(samples, get_reward(config.reward), config.reward), config)
    write_jsonl(run.iter_dir(iteration) / "scored.jsonl", scored)
    write_jsonl(run.iter_dir(iteration) / "train.jsonl", build_train_set(scored))
    pairs = build_pairs(scored, config.pairs_per_question)
    write_jsonl(run.iter_dir(iteration) / "pairs.jsonl", pairs)
    run.update_metrics(iteration, "filter", filter_summary(scored, config.reward) | {"pairs": len(pairs)})
    return scored


def train_stage(run: Run, iteration: int, config: TrainConfig) -> dict:
    """03_train: iteration 0 warms the base model up on the seed set; later iterations train on train.jsonl and,
    when asked, train the baseline (plain SFT on the seed set) for the same number of optimizer steps."""
    seed_set = seed_examples(load_split(run.data_dir, "seed"), run.system_prompt)
    common = dict(learning_rate=config.learning_rate, batch_size=config.batch_size, seed=run.config.seed + iteration,
                  bf16=config.bf16, gradient_checkpointing=config.gradient_checkpointing,
                  lora=config.lora if config.method == "lora" else None)
    sft = dict(batching=config.batching)
    if iteration == 0:  # the warm-up makes the starting model every algorithm and method shares: all weights
        result = training(config, "sft_train", run.base_model, seed_set, run.checkpoint(0), max_steps=config.max_steps,
                          **common | {"lora": None}, **sft)
        return run.update_metrics(0, "train", {"mode": "warmup", "init": run.base_model, **result.summary})["train"]

    init = run.start_model() if config.init == "base" else run.policy_model(iteration)
    common |= dict(num_epochs=config.num_epochs, max_steps=config.max_steps, resume=config.init == "resume",
                   save_state=config.init == "resume")
    output, summary = run.checkpoint(iteration), {"mode": config.algorithm, "method": config.method, "init": init}
    if config.algorithm == "grpo":  # on-policy: it samples as it trains, with the sample and filter settings
        result = training(config, "grpo_train", init, grpo_questions(run, iteration), output,
                          **grpo_options(run, iteration, config), **common)
        summary["samples_drawn"] = result.steps * config.batch_size  # completions GRPO generated
    else:
        data = read_jsonl(run.iter_dir(iteration) / ("pairs.jsonl" if config.algorithm == "dpo" else "train.jsonl"))
        if not data:  # nothing kept: the model stays as it is, and the next stages use the newest checkpoint
            return run.update_metrics(iteration, "train", {"mode": "skipped", "reason": f"no {config.algorithm} data",
                                                           "steps": 0})["train"]
        if config.algorithm == "dpo":
            result = training(config, "dpo_train", init, data, output, beta=config.beta,
                              sft_weight=config.dpo_sft_weight, **common)
        else:
            mixed = seed_set if config.mix_seed else []
            result = training(config, "sft_train", init, data + mixed, output, **common, **sft)
            summary |= {"kept_examples": len(data), "seed_examples": len(mixed)}
    summary |= {**result.summary, "resumed_at_step": saved_steps(init) if config.init == "resume" else None,
                "loss_history": result.loss_history, "reward_history": result.reward_history}
    common["max_steps"] = result.steps
    if config.baseline:
        baseline = training(config, "sft_train", run.baseline_model(iteration), seed_set,
                            run.baseline_checkpoint(iteration), **common, **sft)
        summary["baseline"] = baseline.summary
    return run.update_metrics(iteration, "train", summary)["train"]


def training(config: TrainConfig, function: str, *args, **kwargs) -> TrainResult:
    """One call of rft_helpers.train.<function>: here, or on `num_processes` processes through accelerate."""
    if config.num_processes == 1:
        return getattr(train, function)(*args, **kwargs)
    lora = kwargs.get("lora")
    return launch_training(function, list(args), kwargs | {"lora": lora.model_dump() if lora else None},
                           config.num_processes, config.accelerate_config)


def grpo_questions(run: Run, iteration: int) -> list[dict]:
    """GRPO's training prompts: this iteration's questions (as the sample stage would draw them) and answers."""
    config = run.config.at_iteration(iteration)
    return [{"prompt": build_prompt(q["question"], run.system_prompt), "answer": q["answer"]}
            for q in questions_for(run, iteration, config.sample.num_questions)]


def grpo_options(run: Run, iteration: int, config: TrainConfig) -> dict:
    """GRPO samples with the sample section's settings and scores with the filter's reward."""
    resolved = run.config.at_iteration(iteration)
    sample = resolved.sample
    if sample.temperature == "auto":
        raise ValueError("sample.temperature: auto is not supported with train.algorithm grpo; give a number")
    return dict(reward_fn=resolved.filter.reward, num_generations=sample.n,
                max_completion_length=sample.max_new_tokens, temperature=sample.temperature, top_p=sample.top_p,
                beta=config.beta)


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
        if section == "eval":
            run.record_best(iteration, summary["accuracy"])
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
    if hasattr(engine, "batch_size"):  # the second set is this engine's last job: its own batch size from here on
        engine.batch_size = config.batch_size
    start = time.perf_counter()
    predictions = greedy_predictions(engine, rows, system_prompt, config.max_new_tokens, progress=progress)
    write_jsonl(run.iter_dir(iteration) / f"{prefix}predictions_{config.name}.jsonl", predictions)
    model = getattr(engine, "model", None) or load_model(model_path, run.config.model.dtype)  # vLLM holds none
    loss = solution_loss(model, load_tokenizer(model_path), rows, system_prompt, batch_size=16)
    return accuracy_summary(predictions) | {"solution_loss": None if loss is None else round(loss, 4),
                                            "model": model_path, "seconds": round(time.perf_counter() - start, 2)}
