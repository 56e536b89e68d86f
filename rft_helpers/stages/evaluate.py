"""05_evaluate: greedy pass@1 of this iteration's model and of the baseline on the test split (with `samples`, also
maj@k and pass@k), the forgetting check on `second_set`, and the best checkpoint so far.

The notebook calls these steps in order (`run_stage` calls them all):

1. `test_questions`: the first `num_questions` test questions.
2. `models_to_evaluate`: this iteration's checkpoint (or the newest before it) and the baseline's.
3. `evaluate_models`: each model answers, judged by `reward` -> predictions*.jsonl and metrics.json; for the
   generated tasks, `process_accuracy` too: the share of right answers whose every step is right. With a
   `strategy` other than greedy (majority, best_of_n, beam_search, dvts, mcts: test-time compute), the answer
   is the one the strategy chooses among its N, and metrics.json records what it spent.
4. `record`: the best checkpoint so far (run.json's "best", DIR/best_checkpoint); iteration 0's numbers are the
   baseline's too (both start from the same model).
"""

from __future__ import annotations

import time

from ..config import EvalSetConfig, EvalStageConfig
from ..data import build_prompt, load_split
from ..evaluate import (accuracy_summary, greedy_predictions, judged_predictions, process_accuracy, sampled_predictions,
                        sampled_summary, solution_loss)
from ..io import write_jsonl
from ..models import load_model, load_tokenizer
from ..records import completion_text
from ..rewards import RewardFn, get_reward
from ..run import Run
from ..sampling import SamplingEngine, SamplingParams
from ..search import run_search
from .common import check_process, engine_from_settings, open_prm, reference_steps, search_plan, search_settings


def test_questions(run: Run, config: EvalStageConfig) -> list[dict]:
    return load_split(run.data_dir, "test", config.num_questions)


def models_to_evaluate(run: Run, iteration: int) -> dict[str, str]:
    """metrics.json section -> model: `eval` is this iteration's checkpoint (or the newest before it),
    `baseline_eval` the baseline's once one has been trained."""
    models = {"eval": run.policy_model(iteration + 1)}
    if iteration > 0 and run.has_baseline(iteration):
        models["baseline_eval"] = run.baseline_model(iteration + 1)
    return models


def evaluate_models(run: Run, iteration: int, config: EvalStageConfig, models: dict[str, str], test: list[dict],
                    progress: bool = True) -> dict[str, dict]:
    """Each model's greedy answers (and sampled ones, and the second set's), written and summarised; returns
    metrics.json's sections by name (eval, baseline_eval, eval_<set>, ...)."""
    reward = get_reward(config.reward, "eval.reward")
    second = config.second_set
    check_second = second is not None and (second.every_iteration or iteration in (0, run.config.iterations))
    results = {}
    for section, path in models.items():
        engine = engine_from_settings(config.engine, path, dtype=run.config.model.dtype, batch_size=config.batch_size,
                             seed=run.iteration_seed(iteration), vllm=config.vllm)
        prefix = "" if section == "eval" else "baseline_"
        results[section] = answer_test_set(run, iteration, config, engine, test, reward, prefix, progress)
        if check_second:
            results[f"{section}_{second.name}"] = evaluate_second_set(run, iteration, engine, path, second, reward,
                                                                      config.reward, prefix, progress)
        engine.close()
    for section, summary in results.items():
        run.update_metrics(iteration, section, summary, merge=False)
    return results


def answer_test_set(run: Run, iteration: int, config: EvalStageConfig, engine: SamplingEngine, test: list[dict],
                    reward: RewardFn, prefix: str, progress: bool) -> dict:
    """Greedy pass@1 and, with `samples`, maj@k and pass@k of one model -> {prefix}predictions.jsonl."""
    start = time.perf_counter()
    folder = run.iter_dir(iteration)
    strategy, prm_path = search_plan(run, iteration, config.strategy, config.prm_model, outcome_known=False)
    searched = {}
    if strategy == "greedy":
        predictions = greedy_predictions(engine, test, run.system_prompt, config.max_new_tokens, reward, config.reward,
                                         progress=progress)
    else:
        predictions, searched = search_predictions(run, iteration, config, engine, strategy, prm_path, test, reward)
    references, separator = reference_steps(run, "test"), run.config.task.step_separator
    predictions = [p | {"process_correct": check_process(references, p["id"], completion_text(p["completion"]),
                                                         separator)} for p in predictions]
    write_jsonl(folder / f"{prefix}predictions.jsonl", predictions)
    summary = accuracy_summary(predictions) | process_accuracy(predictions) | {"model": engine.model_name,
                                                                                "strategy": strategy} | searched
    if config.samples:
        params = SamplingParams(n=config.samples, temperature=config.temperature, top_p=config.top_p,
                                max_new_tokens=config.max_new_tokens, seed=run.iteration_seed(iteration))
        sampled = sampled_predictions(engine, test, run.system_prompt, params, reward, config.reward, progress=progress)
        write_jsonl(folder / f"{prefix}sampled_predictions.jsonl", sampled)
        summary |= sampled_summary(sampled)
    return summary | {"seconds": round(time.perf_counter() - start, 2)}


def search_predictions(run: Run, iteration: int, config: EvalStageConfig, engine: SamplingEngine, strategy: str,
                       prm_path: str | None, test: list[dict], reward: RewardFn) -> tuple[list[dict], dict]:
    """Each test question's answer as `strategy` chooses it among its N (no reference answer is used), judged by
    `reward`; and {"search": what it spent, "n": N}."""
    prompts = [build_prompt(r["question"], run.system_prompt) for r in test]
    settings = search_settings(config, run, config.temperature, run.iteration_seed(iteration) + 4099)
    results, compute = run_search(strategy, engine, open_prm(prm_path, config.prm_model), prompts, settings)
    texts = [result.answer.text if result.answer else "" for result in results]
    predictions = [p | {"solutions": len(result.solutions)}
                   for p, result in zip(judged_predictions(test, prompts, texts, reward, config.reward), results)]
    return predictions, {"n": config.n, "search": compute.as_record() | {"prm": prm_path}}


def evaluate_second_set(run: Run, iteration: int, engine: SamplingEngine, model_path: str, config: EvalSetConfig,
                        reward: RewardFn, reward_name: str, prefix: str, progress: bool) -> dict:
    """Greedy accuracy and reference-solution loss on the second set (forgetting shows as a rising loss)."""
    rows, system_prompt = run.second_set(), run.second_set_system_prompt
    if hasattr(engine, "batch_size"):  # the second set is this engine's last job: its own batch size from here on
        engine.batch_size = config.batch_size
    start = time.perf_counter()
    predictions = greedy_predictions(engine, rows, system_prompt, config.max_new_tokens, reward, reward_name,
                                     progress=progress)
    write_jsonl(run.iter_dir(iteration) / f"{prefix}predictions_{config.name}.jsonl", predictions)
    model = getattr(engine, "model", None) or load_model(model_path, run.config.model.dtype)  # vLLM holds none
    loss = solution_loss(model, load_tokenizer(model_path), rows, system_prompt, batch_size=16)
    return accuracy_summary(predictions) | {"solution_loss": None if loss is None else round(loss, 4),
                                            "model": model_path, "seconds": round(time.perf_counter() - start, 2)}


def record(run: Run, iteration: int, results: dict[str, dict]) -> dict[str, dict]:
    """Track the best model so far; in iteration 0 the baseline's numbers are the starting model's."""
    run.record_best(iteration, results["eval"]["accuracy"])
    if iteration == 0:  # RFT and the baseline start from the same model
        for section in [k for k in results if k.startswith("eval")]:
            results[f"baseline_{section}"] = results[section]
            run.update_metrics(0, f"baseline_{section}", results[section], merge=False)
    run.finish_stage("eval", iteration)
    return results


def run_stage(run: Run, iteration: int, config: EvalStageConfig, progress: bool = True) -> dict[str, dict]:
    """The whole stage, step by step as the notebook runs it."""
    test = test_questions(run, config)
    results = evaluate_models(run, iteration, config, models_to_evaluate(run, iteration), test, progress)
    return record(run, iteration, results)
