"""01_sample: n completions per training question from the current policy -> samples.jsonl.

The notebook calls these steps in order (`run_stage` calls them all, for scripts and tests):

1. `plan_chunks`: this iteration's questions in chunks of `chunk_questions`; chunks written before a crash are kept.
2. `open_engine`: the sampling engine on the policy (with vLLM data parallel, the replicas open their own).
3. `choose_temperature`: with temperature auto, a probe on a few questions picks it (B-STaR).
4. `sample_chunks`: every missing chunk, each written to samples.parts/ as it finishes (with the same seeds
   whenever and wherever it runs, so a resumed stage gives what an uninterrupted one would).
5. `write_samples`: the chunks joined into samples.jsonl, and the stage's numbers in metrics.json.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..config import SampleStageConfig
from ..data import build_prompt
from ..filters import balance_score, score_samples
from ..io import read_jsonl, write_jsonl
from ..records import Sample, check_rows, sample_record
from ..rewards import get_reward
from ..run import Run
from ..sampling import SamplingEngine, SamplingParams, resolve_engine
from ..sampling.data_parallel import is_moe, sample_data_parallel
from .common import engine_from_settings
from .common import questions_for

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

    @property
    def resumed_questions(self) -> int:
        return sum(len(chunk) for k, chunk in enumerate(self.chunks) if k not in self.todo)

    def summary(self) -> dict:
        return {"model": self.model, "engine": self.engine, "questions": sum(map(len, self.chunks)),
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
    return SamplePlan(model=run.policy_model(iteration), engine=engine, chunks=chunks, parts=parts,
                      todo=[k for k, part in enumerate(parts) if not part.exists()],  # others: before a crash
                      replicas=config.vllm.data_parallel_size if engine == "vllm" else 1)


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
        params = SamplingParams(n=config.n, temperature=temperature, top_p=config.top_p,
                                max_new_tokens=config.max_new_tokens, seed=run.iteration_seed(iteration) + 7919)
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
    tokens = sum(sample_chunk(run, iteration, config, engine, k, plan.chunks[k], plan.parts[k], progress)
                 for k in plan.todo)
    result = SamplingResult(tokens, time.perf_counter() - start, engine.model_name, engine.usage)
    engine.close()
    return result


def sample_on_replicas(run: Run, iteration: int, config: SampleStageConfig, plan: SamplePlan,
                       progress: bool) -> SamplingResult:
    if not plan.todo:  # every chunk was resumed: start no replica
        return SamplingResult(0, 0.0, plan.model, ranks=[])
    request = {"run_dir": str(run.dir), "iteration": iteration, "config": config.model_dump(mode="json")}
    with tqdm(total=len(plan.todo), desc=f"chunks on {plan.replicas} vLLM replicas", disable=not progress) as bar:
        ranks = sample_data_parallel(request, REPLICA_MODULE, plan.todo, parts_dir(run, iteration), plan.replicas,
                                     config.vllm.tensor_parallel_size, is_moe(plan.model), lambda k: bar.update())
    return SamplingResult(sum(r["completion_tokens"] for r in ranks), max(r["seconds"] for r in ranks), plan.model,
                          ranks=ranks)


def sample_chunk(run: Run, iteration: int, config: SampleStageConfig, engine: SamplingEngine, k: int,
                 chunk: list[dict], path: Path, progress: bool) -> int:
    """Sample chunk k (its seed depends on k only, so where and when it runs does not change it) and write it to
    `path`; returns its completion tokens."""
    params = SamplingParams(n=config.n, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, seed=run.iteration_seed(iteration) + 100_003 * k)
    rows = sample_rows(engine, chunk, run.system_prompt, params, progress)
    write_jsonl(path, rows)
    return sum(r["completion_tokens"] for r in rows)


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
    shutil.rmtree(parts_dir(run, iteration), ignore_errors=True)
    probe = plan.auto_temperature
    numbers = {
        "questions": sum(map(len, plan.chunks)), "samples": len(rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "tokens_per_s": round(result.completion_tokens / result.seconds, 1) if result.seconds else None,
        "seconds": round(result.seconds + (probe["seconds"] if probe else 0.0), 2), "engine": plan.engine,
        "temperature": config.temperature, "top_p": config.top_p, "n": config.n, "model": result.model_name,
    }
    if plan.resumed_questions:
        numbers["resumed_questions"] = plan.resumed_questions
    if probe:
        numbers["auto_temperature"] = probe
    if result.usage:
        numbers["usage"] = result.usage
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
