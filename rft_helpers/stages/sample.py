"""01_sample: n completions per training question from the current policy -> samples.jsonl.

The notebook calls these steps in order (`run_stage` calls them all, for scripts and tests):

1. `plan_chunks`: this iteration's questions in chunks of `chunk_questions`; chunks written before a crash are kept.
2. `open_engine`: the sampling engine on the policy (with vLLM data parallel, the replicas open their own).
   With a search `strategy` (best_of_n, beam_search, dvts, mcts, ...), `plan.strategy` says what runs: plain
   sampling until the run has a PRM, when prm.model is trained.
3. `choose_temperature`: with temperature auto, a probe on a few questions picks it (B-STaR).
4. `sample_chunks`: every missing chunk, each written to samples.parts/ as it finishes (with the same seeds
   whenever and wherever it runs, so a resumed stage gives what an uninterrupted one would). A search writes its
   solutions as the samples, and its compute (and MCTS's tree values and step pairs) beside them.
5. `write_samples`: the chunks joined into samples.jsonl, and the stage's numbers in metrics.json.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..progress import progress as progress_bar

from ..config import SampleStageConfig
from ..data import build_prompt
from ..filters import balance_score, score_samples
from ..exceptions import BudgetReached
from ..io import read_json, read_jsonl, write_json, write_jsonl
from ..prm import ProcessRewardModel
from ..records import Sample, assistant, check_rows, sample_record
from ..rewards import get_reward, score_rows
from ..run import Run
from ..sampling import SamplingEngine, SamplingParams, resolve_engine
from ..sampling.data_parallel import is_moe, sample_data_parallel
from ..search import Compute, run_search
from .common import engine_from_settings, open_prm, questions_for, search_plan, search_settings

REPLICA_MODULE = "rft_helpers.stages.sample_replica"


@dataclass
class SamplePlan:
    model: str  # the policy checkpoint that samples
    engine: str  # the engine name, auto resolved
    chunks: list[list[dict]]  # the iteration's questions, chunk by chunk
    parts: list[Path]  # where each chunk is written
    todo: list[int]  # the chunks still to sample
    replicas: int  # processes sharing the chunks (vLLM data parallel), else 1
    auto_temperature: dict | None = None  # with temperature auto: the probe's scores and choice
    strategy: str = "sample"  # what samples: plain sampling or a search strategy
    prm: str | None = None  # the PRM a search is guided by

    @property
    def resumed_questions(self) -> int:
        return sum(len(chunk) for k, chunk in enumerate(self.chunks) if k not in self.todo)

    def summary(self) -> dict:
        return {"model": self.model, "engine": self.engine, "strategy": self.strategy, "prm": self.prm,
                "questions": sum(map(len, self.chunks)),
                "chunks": len(self.chunks), "chunks_to_sample": len(self.todo),
                "resumed_questions": self.resumed_questions, "replicas": self.replicas}


@dataclass
class SamplingResult:
    completion_tokens: int  # sampled by this run of the stage (resumed chunks not counted)
    seconds: float  # generation time
    model_name: str  # what the engine called the model (an endpoint's served name)
    usage: dict | None = None  # the engine's requests and tokens (and cost, for openai)
    ranks: list[dict] | None = None  # per-replica numbers, with data parallel


def parts_dir(run: Run, iteration: int) -> Path:
    return run.iter_dir(iteration) / "samples.parts"


def question_chunks(run: Run, iteration: int, config: SampleStageConfig) -> list[list[dict]]:
    """This iteration's questions in chunks of `chunk_questions`: the unit written, resumed and shared out."""
    questions = questions_for(run, iteration, config.num_questions)
    return [questions[i:i + config.chunk_questions] for i in range(0, len(questions), config.chunk_questions)]


# ---------------------------------------------------------------------------------------------- 1. plan
def plan_chunks(run: Run, iteration: int, config: SampleStageConfig) -> SamplePlan:
    chunks = question_chunks(run, iteration, config)
    parts = [parts_dir(run, iteration) / f"{k:05d}.jsonl" for k in range(len(chunks))]
    engine = resolve_engine(config.engine)
    strategy, prm = search_plan(run, iteration, config.strategy, config.prm_model, config.search.mcts_value)
    return SamplePlan(model=run.policy_model(iteration), engine=engine, chunks=chunks, parts=parts,
                      todo=[k for k, part in enumerate(parts) if not part.exists()],  # others: before a crash
                      replicas=config.vllm.data_parallel_size if engine == "vllm" else 1, strategy=strategy, prm=prm)


# ------------------------------------------------------------------------------------------- 2. engine
def open_engine(run: Run, iteration: int, config: SampleStageConfig, plan: SamplePlan) -> SamplingEngine | None:
    """The engine on the policy model, here; None when vLLM replicas do all the sampling (and no probe needs it)."""
    if plan.replicas > 1 and config.temperature != "auto":
        return None
    return engine_from_settings(plan.engine, plan.model, dtype=run.config.model.dtype, batch_size=config.batch_size,
                             seed=run.iteration_seed(iteration), vllm=config.vllm, openai=config.openai)


# -------------------------------------------------------------------------------------- 3. temperature
def choose_temperature(run: Run, iteration: int, config: SampleStageConfig, plan: SamplePlan,
                       engine: SamplingEngine | None, progress: bool = True) -> SampleStageConfig:
    """The config to sample with. With temperature auto (B-STaR's automatic temperature): sample the first
    `auto_questions` questions at each candidate temperature, score them with the filter, and keep the temperature
    with the best balance score (ties: the lower one); the probe costs len(auto_temperatures) * auto_questions * n
    extra samples. Its scores are kept in `plan.auto_temperature` (then metrics.json: sampling.auto_temperature)."""
    if config.temperature != "auto":
        return config
    start = time.perf_counter()
    probe = probe_temperatures(run, iteration, engine, [q for chunk in plan.chunks for q in chunk], config, progress)
    plan.auto_temperature = probe | {"seconds": round(time.perf_counter() - start, 2)}
    return config.model_copy(update={"temperature": probe["temperature"]})


def probe_temperatures(run: Run, iteration: int, engine: SamplingEngine, questions: list[dict],
                       config: SampleStageConfig, progress: bool) -> dict:
    reward = get_reward(config.filter.reward)
    probe = questions[:config.auto_questions]
    scores = {}
    for temperature in sorted(config.auto_temperatures):
        params = SamplingParams(n=config.n, temperature=temperature, top_p=config.top_p, top_k=config.top_k,
                                min_p=config.min_p, max_new_tokens=config.max_new_tokens,
                                seed=run.iteration_seed(iteration) + 7919)
        rows = score_samples(sample_rows(engine, probe, run.system_prompt, params, progress), reward,
                             config.filter.reward)
        scores[temperature] = round(balance_score(rows, config.filter, config.auto_target_correct), 4)
    best = max(scores, key=lambda t: (scores[t], -t))
    return {"temperature": best, "balance_scores": {str(t): s for t, s in scores.items()},
            "probe_questions": len(probe)}


# ------------------------------------------------------------------------------------------- 4. sample
def sample_chunks(run: Run, iteration: int, config: SampleStageConfig, plan: SamplePlan,
                  engine: SamplingEngine | None, progress: bool = True) -> SamplingResult:
    """Sample every chunk still to do, here or on the vLLM replicas; closes the engine."""
    if plan.replicas > 1:
        if engine is not None:
            engine.close()  # the probe's engine frees its GPUs for the replicas
        return sample_on_replicas(run, iteration, config, plan, progress)
    start = time.perf_counter()
    prm = open_prm(plan.prm, config.prm_model)
    tokens = 0
    try:
        for k in plan.todo:
            check_spend(config, plan, k)
            before = engine.usage
            tokens += sample_chunk(run, iteration, config, engine, k, plan.chunks[k], plan.parts[k], progress, prm)
            write_json(usage_path(plan.parts[k]), usage_delta(before, engine.usage))
    finally:
        engine.close()
    return SamplingResult(tokens, time.perf_counter() - start, engine.model_name, engine.usage)


def usage_path(part: Path) -> Path:
    """Where a chunk's usage (requests, tokens, cost as the engine counted them) is written, beside its samples."""
    return part.with_name(part.stem + ".usage.json")


def usage_delta(before: dict, after: dict) -> dict:
    return {key: round(value - before.get(key, 0), 6) for key, value in after.items()}


def written_usage(parts: list[Path]) -> dict:
    """The usage of the chunks written so far, whenever they were written (a resumed stage's earlier runs too)."""
    total: dict = {}
    for path in parts:
        if path.exists() and usage_path(path).exists():
            for key, value in read_json(usage_path(path)).items():
                total[key] = round(total.get(key, 0) + value, 6)
    return total


def check_spend(config: SampleStageConfig, plan: SamplePlan, k: int) -> None:
    """With openai.max_cost_usd: stop before chunk k when the spend so far plus what a chunk costs on average
    would pass the cap. The chunks written stay; raising the cap and running again continues from here."""
    cap = config.openai.max_cost_usd if plan.engine == "openai" else None
    if cap is None:
        return
    done = [p for p in plan.parts if p.exists() and usage_path(p).exists()]
    spent = written_usage(done).get("cost_usd", 0.0)
    per_chunk = spent / len(done) if done else 0.0
    if spent + per_chunk > cap:
        left = len(plan.chunks) - len(done)
        raise BudgetReached(
            f"openai.max_cost_usd={cap:g}: ${spent:.4f} spent on {len(done)} of {len(plan.chunks)} chunks and the "
            f"next would take about ${per_chunk:.4f} (about ${per_chunk * left:.4f} for the {left} left); the chunks "
            "written are kept: raise openai.max_cost_usd and run the same command again to continue")


def sample_on_replicas(run: Run, iteration: int, config: SampleStageConfig, plan: SamplePlan,
                       progress: bool) -> SamplingResult:
    if not plan.todo:  # every chunk was resumed: start no replica
        return SamplingResult(0, 0.0, plan.model, ranks=[])
    request = {"run_dir": str(run.dir), "iteration": iteration, "config": config.model_dump(mode="json")}
    with progress_bar(total=len(plan.todo), desc=f"chunks on {plan.replicas} vLLM replicas", disable=not progress) as bar:
        ranks = sample_data_parallel(request, REPLICA_MODULE, plan.todo, parts_dir(run, iteration), plan.replicas,
                                     config.vllm.tensor_parallel_size, is_moe(plan.model), lambda k: bar.update())
    return SamplingResult(sum(r["completion_tokens"] for r in ranks), max(r["seconds"] for r in ranks), plan.model,
                          ranks=ranks)


def sample_chunk(run: Run, iteration: int, config: SampleStageConfig, engine: SamplingEngine, k: int,
                 chunk: list[dict], path: Path, progress: bool, prm: ProcessRewardModel | None = None) -> int:
    """Sample chunk k (its seed depends on k only, so where and when it runs does not change it) and write it to
    `path`; returns the completion tokens generated (a search's pruned candidates included)."""
    seed = run.iteration_seed(iteration) + 100_003 * k
    strategy, prm_path = search_plan(run, iteration, config.strategy, config.prm_model, config.search.mcts_value)
    if strategy != "sample":
        if prm is None and prm_path is not None:  # a vLLM replica opens its own
            prm = open_prm(prm_path, config.prm_model)
        rows, compute, trees = search_rows(run, config, engine, prm, strategy, chunk, seed)
        write_jsonl(search_path(path), [{"compute": compute.as_record(), "trees": trees}])
        write_jsonl(path, rows)
        return compute.tokens
    params = SamplingParams(n=config.n, temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
                            min_p=config.min_p, max_new_tokens=config.max_new_tokens, seed=seed)
    rows = sample_rows(engine, chunk, run.system_prompt, params, progress)
    write_jsonl(path, rows)
    return sum(r["completion_tokens"] for r in rows)


def search_path(part: Path) -> Path:
    """Where a chunk's search compute and trees are written, beside its samples."""
    return part.with_name(part.stem + ".search.jsonl")


def search_rows(run: Run, config: SampleStageConfig, engine: SamplingEngine, prm: ProcessRewardModel | None,
                strategy: str, questions: list[dict], seed: int) -> tuple[list[dict], Compute, list[dict]]:
    """A search's solutions to `questions` as records.Sample rows (their `sampling` says the strategy, the
    solution's search score and whether the strategy chose it), its compute, and what MCTS's trees know."""
    prompts = [build_prompt(q["question"], run.system_prompt) for q in questions]
    reward = get_reward(config.filter.reward)

    def outcome(indices: list[int], texts: list[str]) -> list[float | None]:  # MCTS rollouts, against the reference
        rows = [{"id": questions[i]["id"], "prompt": prompts[i], "answer": questions[i]["answer"],
                 "completion": assistant(text)} for i, text in zip(indices, texts)]
        return score_rows(rows, reward, config.filter.reward)

    settings = search_settings(config, run, float(config.temperature), seed)
    results, compute = run_search(strategy, engine, prm, prompts, settings, outcome)
    sampling = {"strategy": strategy, "n": config.n, "temperature": settings.temperature, "top_p": config.top_p,
                "max_new_tokens": config.max_new_tokens, "seed": seed, **config.search.model_dump(),
                "engine": engine.name, "model": engine.model_name}
    rows, trees = [], []
    for question, prompt, result in zip(questions, prompts, results):
        for index, (solution, value) in enumerate(zip(result.solutions, result.values)):
            finish = "length" if solution.tokens >= config.max_new_tokens else "stop"
            rows.append(sample_record(question, index, prompt, solution.text, solution.prompt_tokens, solution.tokens,
                                      finish, sampling | {"search_score": value, "chosen": index == result.chosen}))
        if result.info:
            trees.append({"id": question["id"], **result.info})
    return rows, compute, trees


def sample_rows(engine: SamplingEngine, questions: list[dict], system_prompt: str | None, params: SamplingParams,
                progress: bool) -> list[dict]:
    """`params.n` samples per question, as records.Sample rows."""
    prompts = [build_prompt(q["question"], system_prompt) for q in questions]
    outputs = engine.generate(prompts, params, progress=progress)
    sampling = params.as_record() | {"engine": engine.name, "model": engine.model_name}
    return [sample_record(q, k, prompt, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason, sampling)
            for q, prompt, completions in zip(questions, prompts, outputs) for k, c in enumerate(completions)]


# -------------------------------------------------------------------------------------------- 5. write
def write_samples(run: Run, iteration: int, config: SampleStageConfig, plan: SamplePlan,
                  result: SamplingResult) -> list[dict]:
    """Join the chunks into samples.jsonl (question order), remove samples.parts/, record the numbers."""
    rows = check_rows([row for path in plan.parts for row in read_jsonl(path)], Sample, parts_dir(run, iteration))
    write_jsonl(run.iter_dir(iteration) / "samples.jsonl", rows)
    searched = [read_jsonl(search_path(path))[0] for path in plan.parts if search_path(path).exists()]
    if any(s["trees"] for s in searched):
        write_jsonl(run.iter_dir(iteration) / "search_trees.jsonl", [t for s in searched for t in s["trees"]])
    all_usage = written_usage(plan.parts)  # every chunk's, this run's and those resumed: what the stage cost in all
    resumed_usage = written_usage([p for k, p in enumerate(plan.parts) if k not in plan.todo])
    shutil.rmtree(parts_dir(run, iteration), ignore_errors=True)
    probe = plan.auto_temperature
    numbers = {
        "questions": sum(map(len, plan.chunks)), "samples": len(rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "tokens_per_s": round(result.completion_tokens / result.seconds, 1) if result.seconds else None,
        "seconds": round(result.seconds + (probe["seconds"] if probe else 0.0), 2), "engine": plan.engine,
        "temperature": config.temperature, "top_p": config.top_p, "n": config.n, "model": result.model_name,
        "strategy": plan.strategy,
    }
    if plan.strategy != config.strategy:
        numbers["strategy_note"] = f"{config.strategy} needs a PRM: sampled plainly until one is trained"
    if searched:  # every chunk's compute: generated tokens (pruned candidates too), PRM calls, seconds
        numbers["search"] = {key: round(sum(s["compute"][key] for s in searched), 2) for key in searched[0]["compute"]}
        numbers["search"]["prm"] = plan.prm
    if plan.resumed_questions:
        numbers["resumed_questions"] = plan.resumed_questions
    if probe:
        numbers["auto_temperature"] = probe
    if result.usage:
        numbers["usage"] = all_usage or result.usage
        if resumed_usage:
            numbers["resumed_usage"] = resumed_usage
    if result.ranks:
        numbers["data_parallel"] = {"replicas": plan.replicas, "ranks": result.ranks}
    run.update_metrics(iteration, "sampling", numbers, merge=False)
    run.finish_stage("sample", iteration)
    return rows


def run_stage(run: Run, iteration: int, config: SampleStageConfig, progress: bool = True) -> list[dict]:
    """The whole stage, step by step as the notebook runs it."""
    plan = plan_chunks(run, iteration, config)
    engine = open_engine(run, iteration, config, plan)
    config = choose_temperature(run, iteration, config, plan, engine, progress)
    result = sample_chunks(run, iteration, config, plan, engine, progress)
    return write_samples(run, iteration, config, plan, result)
