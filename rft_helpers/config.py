"""Typed parameters for a whole RFT run: one config object per section, all inside `RunConfig`.

This file is the one place a setting is written: its type, default and description. Each stage reads one
*stage config* (`RunConfig.stage_config`): its section at that iteration plus the other sections it uses (the
sampling engines' settings, the filter that scores a probe, ...). The stage notebooks' `parameters` cells are
generated from these classes (`make notebooks`), and the pipeline injects their values.

Unknown keys and wrong types are errors that name the field; rules between sections are checked here too, so
`rft validate` catches them. Config does no I/O: `recipes.py` reads a recipe (the defaults below, then the YAML,
then `--set key=value`), and `preflight.py` looks for the files a config names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .exceptions import ConfigError


# Fields whose value an error never repeats: a key pasted by mistake must not reach a log.
SECRET_FIELDS = {"api_key_env"}
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gho_", "ghs_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "AKIA", "AIza",
                 "pk-", "rk-", "sess-")


def looks_like_secret(value: str) -> bool:
    """A known key prefix (sk-, hf_, ghp_, AKIA...), or a long mixed string of letters and digits such as no one
    names a variable (at least 20 characters, lower and upper case and digits)."""
    if value.startswith(_KEY_PREFIXES):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return len(value) >= 20 and mixed


class _Strict(BaseModel):
    # strict: `n: true` is not 1 and `n: "8"` not 8; no inf or nan (`learning_rate: .inf`)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------------------------- model
class ScratchModelConfig(_Strict):
    """A tiny causal LM built from a transformers config, with a character tokenizer (no download)."""

    architecture: Literal["llama", "qwen2"] = Field(
        "llama", description="transformers architecture (AutoTokenizer reloads a qwen2 char tokenizer wrongly)"
    )
    hidden_size: int = Field(128, gt=0, description="width of the residual stream")
    num_layers: int = Field(4, gt=0, description="transformer blocks")
    num_heads: int = Field(4, gt=0, description="attention heads (hidden_size must divide by it)")
    intermediate_size: int = Field(512, gt=0, description="MLP width")
    max_positions: int = Field(256, gt=0, description="longest prompt + completion, in characters")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ScratchModelConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; pick values that divide"
            )
        return self


class ModelConfig(_Strict):
    """Which model every stage starts from (shared by sampling, training and evaluation)."""

    name_or_path: str = Field(
        "scratch", description='hub id, local folder, package:NAME (an installed package\'s folder), or "scratch"'
    )
    gguf_file: str | None = Field(None, description="a GGUF file in that folder: converted once to a cached checkpoint")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="weights dtype for sampling and evaluation (training keeps float32 weights)"
    )
    scratch: ScratchModelConfig = Field(default_factory=ScratchModelConfig, description="used when name_or_path is scratch")

    @property
    def is_scratch(self) -> bool:
        return self.name_or_path == "scratch"

    @property
    def is_local(self) -> bool:
        """Local paths start with '.', '/' or '~'; anything else is a hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct)."""
        return self.name_or_path.startswith((".", "/", "~"))


# ------------------------------------------------------------------------------------------------ task
class DatasetSource(_Strict):
    """Questions and reference answers from a JSONL file or a Hugging Face Hub dataset. The reference answer is
    the last `#### N` or `\\boxed{}` of the answer field, or the field itself; when the field holds more than the
    answer (GSM8K's worked solutions), that text is the reference solution too."""

    path: str = Field(..., description="a JSONL file, or a dataset id on the Hugging Face Hub (e.g. openai/gsm8k)")
    subset: str | None = Field(None, description="hub dataset configuration (e.g. main for openai/gsm8k)")
    split: str = Field("train", description="hub dataset split")
    question_field: str = Field("question", description="field holding the question (MATH: problem)")
    answer_field: str = Field("answer", description="field holding the answer or a solution ending in it")
    solution_field: str | None = Field(None, description="field holding a worked solution (MATH: solution)")


class TaskConfig(_Strict):
    """The questions: generated from the run seed, `addition` (59+63=?, solved column by column, for the tiny
    model), `chain` (7+5*3-4=?, left to right, one line per operation) or `word_arithmetic` (What is 512 - 96?, in
    plain English, for pretrained chat models); or `dataset`: train and test sets from files or the hub (GSM8K,
    MATH, your own JSONL)."""

    name: Literal["addition", "chain", "word_arithmetic", "dataset"] = Field("addition", description="task generator")
    digits: int = Field(2, ge=1, le=9, description="addition: digits of each operand; word_arithmetic: at most")
    min_ops: int = Field(2, ge=1, description="chain: fewest operations in a chain (7+5*3 has two)")
    max_ops: int = Field(3, ge=1, description="chain: most operations in a chain")
    max_operand: int = Field(9, ge=1, description="chain: largest number in a question")
    max_value: int = Field(99, ge=1, description="chain: largest intermediate value")
    long_operand_share: float = Field(
        0.5, ge=0, le=1, description="word_arithmetic: share of sums and differences with a `digits`-digit operand"
    )
    train: DatasetSource | None = Field(None, description="dataset: the training questions (shuffled with the seed)")
    test: DatasetSource | None = Field(None, description="dataset: the test questions (the first num_test, in order)")
    num_train: int = Field(3000, gt=0, description="training questions (RFT samples on these); dataset: at most")
    num_test: int = Field(300, gt=0, description="held-out test questions; dataset: at most")
    seed_size: int = Field(100, ge=0, description="train questions with reference solutions: warm-up and baseline data")
    system_prompt_file: str | None = Field(None, description="text file whose content becomes the system message")
    too_long: Literal["skip", "error"] = Field(
        "skip", description="a question whose prompt leaves no room in the model's context for the answer "
                            "(max_new_tokens): skip it (counted in the log and metrics.json) or stop naming the row"
    )
    step_separator: str = Field(
        "\n", min_length=1, description="what separates a solution's steps (a newline: one step per line; MATH-style: "
                                         "a blank line): how PRMs, the filter and the process check split completions"
    )

    @model_validator(mode="after")
    def _sizes(self) -> "TaskConfig":
        if self.seed_size > self.num_train:
            raise ValueError(f"seed_size={self.seed_size} > num_train={self.num_train}; the seed set is drawn from train")
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops={self.min_ops} > max_ops={self.max_ops}")
        if self.name == "dataset" and (self.train is None or self.test is None):
            raise ValueError("task.name dataset needs task.train and task.test (each: path, fields)")
        return self


# -------------------------------------------------------------------------------------------- sampling
def needs_prm(strategy: str, mcts_value: str = "prm", outcome_known: bool = True) -> bool:
    """Whether a search strategy cannot run without a PRM: all but majority, and MCTS unless its values come
    from rollouts judged against a known reference answer (training questions, not test ones)."""
    if strategy == "mcts":
        return mcts_value != "rollout" or not outcome_known
    return strategy in ("best_of_n", "weighted_best_of_n", "beam_search", "dvts")


class SearchConfig(_Strict):
    """Settings of the search strategies (rft_helpers/search), named as search-and-learn names them. N is the
    section's `n`; steps end at task.step_separator."""

    beam_width: int = Field(4, gt=0, description="M: beam search keeps N/M beams and expands each M ways; DVTS "
                                                 "runs N/M subtrees, each keeping its best of M per step")
    max_steps: int = Field(40, gt=0, description="steps before the open beams run to the end of their answers")
    lookahead: int = Field(0, ge=0, description="greedy steps taken past a candidate to score it (ranking only)")
    aggregation: Literal["min", "prod", "last", "mean"] = Field(
        "last", description="how a candidate's step scores make the number it is ranked by")
    mcts_simulations: int = Field(16, gt=0, description="mcts: selections per question")
    mcts_width: int = Field(4, gt=0, description="mcts: children per expansion")
    mcts_c_puct: float = Field(2.0, ge=0, description="mcts: PUCT exploration constant (rStar-Math's 2)")
    mcts_value: Literal["prm", "rollout", "both"] = Field(
        "prm", description="mcts: a new node's value from the PRM, from one rollout judged by the outcome reward "
                           "(training questions only; the PRM at test time), or their mean")


class SampleConfig(_Strict):
    """01_sample: k completions per training question."""

    engine: Literal["auto", "transformers", "vllm", "openai"] = Field(
        "transformers",
        description="sampling engine (auto: vllm on a GPU where it is installed, else transformers; vllm: see "
                    "`vllm:`; openai: an endpoint, see `openai:`)"
    )
    num_questions: int | None = Field(None, gt=0, description="questions sampled per iteration (None: all of train)")
    strategy: Literal["sample", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "mcts"] = Field(
        "sample", description="sample: n completions per question; else a search (see `search`) whose solutions "
                              "are the samples (with prm.model trained: plain sampling until a PRM exists)")
    search: SearchConfig = Field(default_factory=SearchConfig, description="the search strategies' settings")
    n: int = Field(8, gt=0, description="completions per question (a search's N)")
    temperature: Annotated[float, Field(ge=0.0)] | Literal["auto"] = Field(
        1.0, description="0 means greedy; auto: chosen each iteration by B-STaR's balance score (see auto_*)"
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    top_k: int = Field(0, ge=0, description="sample among the k likeliest tokens only (0: all); every engine")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="drop tokens below min_p x the likeliest one's probability "
                                                          "(0: none); every engine")
    max_new_tokens: int = Field(64, gt=0, description="longest completion, in tokens")
    batch_size: int = Field(64, gt=0, description="prompts per generate call (each expands to n sequences)")
    chunk_questions: int = Field(
        512, gt=0, description="questions per chunk written as it finishes: a crashed stage resumes at the next chunk"
    )
    auto_temperatures: list[Annotated[float, Field(gt=0.0)]] = Field(
        [0.3, 0.5, 0.7, 0.9, 1.1], min_length=1, description="temperature auto: the candidates tried"
    )
    auto_questions: int = Field(32, gt=0, description="temperature auto: training questions each candidate samples")
    auto_target_correct: int = Field(
        4, gt=0, description="temperature auto: distinct correct samples per question that count as fully explored"
    )


class VLLMConfig(_Strict):
    """Settings of the vLLM engine, used by sampling and evaluation when their engine is vllm."""

    tensor_parallel_size: int = Field(1, gt=0, description="GPUs one model is split over")
    data_parallel_size: int = Field(
        1, gt=0, description="model replicas (one process each, on tensor_parallel_size GPUs) sharing the sample "
                             "stage's chunks; on CPU each replica takes a share of the cores"
    )
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="share of GPU memory vLLM may take")
    kv_cache_gib: float | None = Field(None, gt=0, description="KV cache size in GiB (CPU default 4; None: from the GPU share)")
    enable_prefix_caching: bool = Field(True, description="reuse the KV cache of shared prompt prefixes")
    max_model_len: int | None = Field(None, gt=0, description="longest prompt + completion (None: the model's)")
    enforce_eager: bool = Field(False, description="skip torch.compile and CUDA graphs: starts faster, samples slower")


class OpenAIConfig(_Strict):
    """Settings of the openai engine: any OpenAI-compatible chat endpoint (sample.engine: openai). The key is read
    from the environment variable `api_key_env` and never written to params, notebooks or outputs."""

    base_url: str = Field("http://localhost:8000/v1", description="endpoint, up to /v1")
    model: str | None = Field(None, description="served model name (None: the checkpoint path, as `vllm serve` names it)")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="name of the environment variable holding the key (the key itself never goes "
                                      "in params)"
    )
    max_concurrency: int = Field(16, gt=0, description="requests in flight at once")
    max_retries: int = Field(5, ge=0, description="retries of a request on 408/409/429/5xx, timeouts, lost connections")
    timeout_s: float = Field(120.0, gt=0, description="seconds before a request is abandoned (then retried)")
    prompt_price_per_million: float = Field(0.0, ge=0, description="USD per million prompt tokens, for metrics.json")
    completion_price_per_million: float = Field(0.0, ge=0, description="USD per million completion tokens")
    max_cost_usd: float | None = Field(
        None, gt=0, description="stop the sample stage before a chunk would take the estimated spend (at the prices "
                                "above, chunks already written included) past this; raise it and rerun to continue")
    reasoning: Literal["keep", "drop", "wrap"] = Field(
        "keep", description="a reasoning model's thinking (reasoning_content, or <think> blocks in the answer): keep "
                            "it as a <think> block before the answer, drop it, or wrap both as "
                            "<think>...</think><answer>...</answer> (ms-swift's distill format)")

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, name: str) -> str:
        if looks_like_secret(name):  # the message never repeats the value: it may be the key itself
            raise ValueError("this looks like a key, not the name of the environment variable holding one (value "
                             "not shown); export the key as a variable (export OPENAI_API_KEY=...) and give its name")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError("not an environment variable name (letters, digits and _; value not shown)")
        return name

    @model_validator(mode="after")
    def _a_cap_needs_prices(self) -> "OpenAIConfig":
        if self.max_cost_usd is not None and not (self.prompt_price_per_million or self.completion_price_per_million):
            raise ValueError("max_cost_usd needs the prices to estimate the spend: set prompt_price_per_million "
                             "and completion_price_per_million (USD per million tokens)")
        return self

    def cost(self, usage: dict) -> dict:
        dollars = (usage.get("prompt_tokens", 0) * self.prompt_price_per_million
                   + usage.get("completion_tokens", 0) * self.completion_price_per_million) / 1e6
        return {"cost_usd": round(dollars, 6)}


# ---------------------------------------------------------------------------------------------- filter
class FilterConfig(_Strict):
    """03_filter: score every sample, keep the good ones, record why the others were dropped."""

    reward: str = Field("exact_answer", description="reward name from rft_helpers.rewards, or a dotted path")
    min_reward: float = Field(1.0, description="keep samples whose reward is at least this")
    dedupe: bool = Field(True, description="drop repeated solutions to the same question")
    max_per_question: int | None = Field(4, gt=0, description="keep at most this many samples per question")
    prefer_shorter: bool = Field(False, description="under max_per_question, keep a question's shortest samples first")
    near_duplicate: float | None = Field(
        None, gt=0, le=1, description="drop a sample whose word 3-grams overlap a kept one's by this Jaccard share or more"
    )
    drop_too_easy: bool = Field(False, description="drop questions whose samples are all correct: nothing left to learn")
    max_completion_tokens: int | None = Field(None, gt=0, description="drop longer completions (None: no limit)")
    drop_truncated: bool = Field(False, description="drop completions cut off at sample.max_new_tokens")
    pairs_per_question: int = Field(2, gt=0, description="DPO pairs per question: a kept sample against a wrong one")
    step_pairs: bool = Field(
        False, description="with sample.strategy mcts: add MCTS's step-level pairs to the DPO pairs (after a shared "
                           "prefix, a step whose backed-up value is at least 0.5 above its sibling's)")
    prm: bool = Field(False, description="score every sample's steps with the run's PRM (the prm section), rank by it "
                                         "under max_per_question and pair by it for DPO")
    prm_threshold: float | None = Field(
        None, ge=0, le=1, description="with prm: drop samples whose aggregated step score is below this (low_prm)"
    )
    prm_aggregation: Literal["min", "prod", "last", "mean", "min_before_last"] = Field(
        "min", description="how a sample's step scores become one (min: its worst step; min_before_last: its worst "
                           "step before the answer, which the outcome reward judges already)"
    )
    script: str | None = Field(
        None, description="language check by writing system: drop samples whose letters are under 95% of this "
                          "Unicode script (LATIN, CYRILLIC, GREEK, CJK, ARABIC, ...), e.g. a reply that drifts into Chinese"
    )


# -------------------------------------------------------------------------------------------- training
class LoraSettings(_Strict):
    """LoRA adapters (PEFT) instead of full fine-tuning: far less optimizer memory, small checkpoints."""

    r: int = Field(16, gt=0, description="adapter rank")
    alpha: int = Field(32, gt=0, description="scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: str | list[str] = Field("all-linear", description="layers that get adapters (PEFT names)")
    merge: bool = Field(
        True, description="save the merged model (the adapter is kept in checkpoint/adapter); False: save the adapter "
                          "only, which the next iteration trains on and vLLM serves over the base model"
    )


LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")  # transformers' SchedulerType names


class OptimizationSettings(_Strict):
    """How the optimizer steps, for the RFT training and the warm-up alike (transformers' TrainingArguments)."""

    lr_scheduler: Literal[LR_SCHEDULERS] = Field(
        "linear", description="learning-rate schedule within a training call, as transformers names it (linear: "
                              "decay to 0; constant: the rate as given)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps spent warming the rate up from 0")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0: no clipping)")
    gradient_accumulation_steps: int = Field(
        1, gt=0, description="batches whose gradients add up to one optimizer step: a step sees batch_size x this "
                             "x num_processes sequences")
    save_every_steps: int | None = Field(
        None, gt=0, description="save the trainer's state every that many steps; a stage killed mid-training resumes "
                                "from the last save (None: a killed stage trains from the start; not with init resume)")


class TrainConfig(OptimizationSettings):
    """04_train: SFT on the kept samples (completion-only loss), DPO on pairs of them, or on-policy GRPO."""

    algorithm: Literal["sft", "dpo", "grpo"] = Field(
        "sft", description="sft: the kept samples; dpo: right/wrong pairs (filter.pairs_per_question); grpo: on-policy, "
                           "sampling as it trains with sample.n/temperature/max_new_tokens and filter.reward"
    )
    beta: float = Field(0.1, ge=0, description="dpo: strength of the pull toward the starting model; grpo: KL weight")
    dpo_sft_weight: float = Field(
        0.0, ge=0, description="dpo: weight of an SFT loss on the chosen completions added to DPO's (RPO; 0: plain DPO)"
    )
    prm_weight: float = Field(
        0.0, ge=0, description="grpo: weight of the run's PRM (aggregated as filter.prm_aggregation) as a second reward "
                               "beside filter.reward's weight 1 (0: outcome only)"
    )

    init: Literal["previous", "base", "resume"] = Field(
        "previous", description="start from the last checkpoint, the warm-up model, or the last checkpoint with its "
                                "optimizer, scheduler and step count (saved beside it: about 2x the weights' size)"
    )
    method: Literal["full", "lora"] = Field("full", description="fine-tune every weight, or LoRA adapters (see lora)")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="used when method is lora")
    learning_rate: float = Field(5e-4, gt=0, description="peak learning rate (then as lr_scheduler says)")
    num_epochs: float = Field(1.0, gt=0, description="passes over the kept samples")
    max_steps: int | None = Field(None, gt=0, description="cap on optimizer steps (None: set by num_epochs)")
    batch_size: int = Field(32, gt=0, description="sequences per batch on each process (see gradient_accumulation_steps)")
    mix_seed: bool = Field(False, description="train on the seed set's reference solutions too (keeps the warm-up skills)")
    baseline: bool = Field(True, description="also train the baseline: plain SFT on the seed set, same number of steps")
    bf16: bool = Field(False, description="bf16 autocast over float32 weights (faster on GPUs and AVX-512 bf16 CPUs)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less memory (big models), ~1.7x slower steps"
    )
    batching: Literal["padded", "padding_free", "length_grouped"] = Field(
        "padded", description="sft: how examples of different lengths share a batch (bench/training.py)"
    )
    num_processes: int = Field(1, gt=0, description="training processes (GPUs); more than 1 runs `accelerate launch`")
    accelerate_config: str = Field(
        "ddp", description="with num_processes > 1: ddp, deepspeed_zero3, fsdp (params/accelerate/) or a config path"
    )
    trainer_args: dict[str, Any] = Field(
        default_factory=dict, description="any other field of the trainer's config (TRL's SFTConfig, DPOConfig or "
                                          "GRPOConfig, as train.algorithm picks), e.g. {adam_beta2: 0.95}")


    @model_validator(mode="after")
    def _resume_needs_the_trained_weights(self) -> "TrainConfig":
        if self.init == "resume" and self.method == "lora" and self.lora.merge:
            raise ValueError("init resume with method lora needs lora.merge false: the optimizer state belongs to "
                             "the adapter, not to merged weights")
        if self.init == "resume" and self.save_every_steps:
            raise ValueError("save_every_steps cannot be used with init resume (a resumed stage continues from the "
                             "previous checkpoint's saved state); set one of them")
        return self


# Trainer fields the toolkit sets itself -> the setting to use instead (None: the toolkit's own business).
OWNED_TRAINER_FIELDS = {
    "output_dir": None, "logging_steps": None, "save_strategy": None, "report_to": None, "use_cpu": None,
    "dataloader_num_workers": None, "ignore_data_skip": None, "optim": None, "seed": "seed",
    "learning_rate": "train.learning_rate", "lr_scheduler_type": "train.lr_scheduler",
    "warmup_steps": "train.warmup_ratio", "warmup_ratio": "train.warmup_ratio",
    "per_device_train_batch_size": "train.batch_size", "num_train_epochs": "train.num_epochs",
    "max_steps": "train.max_steps", "bf16": "train.bf16", "gradient_checkpointing": "train.gradient_checkpointing",
    "weight_decay": "train.weight_decay", "max_grad_norm": "train.max_grad_norm",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps", "beta": "train.beta",
    "num_generations": "sample.n", "max_completion_length": "sample.max_new_tokens",
    "temperature": "sample.temperature", "top_p": "sample.top_p", "top_k": "sample.top_k", "min_p": "sample.min_p",
    "reward_weights": "train.prm_weight",
    "rpo_alpha": "train.dpo_sft_weight", "save_steps": "train.save_every_steps", "save_total_limit": None,
    "padding_free": "train.batching", "group_by_length": "train.batching",
}
TRAINER_CONFIGS = {"sft": "SFTConfig", "dpo": "DPOConfig", "grpo": "GRPOConfig"}


def check_trainer_args(trainer_args: dict, algorithm: str, at: str = "") -> None:
    """Each key must be a field of the algorithm's TRL config that the toolkit does not set itself."""
    if not trainer_args:
        return
    import dataclasses

    import trl

    config_class = getattr(trl, TRAINER_CONFIGS[algorithm])
    fields = {f.name for f in dataclasses.fields(config_class)}
    for key in trainer_args:
        if key in OWNED_TRAINER_FIELDS:
            instead = OWNED_TRAINER_FIELDS[key]
            raise ValueError(f"train.trainer_args.{key}: set by the toolkit{at}" + (
                f"; use {instead}" if instead else "; it cannot be changed"))
        if key not in fields:
            raise ValueError(f"train.trainer_args.{key}: not a field of trl.{config_class.__name__} "
                             f"(train.algorithm {algorithm}){at}")


class WarmupConfig(OptimizationSettings):
    """Iteration 0: a short SFT of all weights on the seed set, so the starting model is weak but not hopeless and
    the same for every training algorithm and method (0 steps: skip)."""

    max_steps: int = Field(0, ge=0, description="optimizer steps on the seed set (0: evaluate the model as it is)")
    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate")
    batch_size: int = Field(32, gt=0, description="sequences per optimizer step")


# ------------------------------------------------------------------------------------------------- prm
class PRMConfig(_Strict):
    """02_prm: the process reward model. `model: trained` trains one in the loop from the policy's own rollouts
    (Math-Shepherd): from each step's prefix the policy writes `rollouts` continuations, and the step's label is
    the share that reach the right answer; the labels train a two-label token classifier on `backbone`. Or
    `model` names a PRM folder or hub id (token-classification, Qwen2.5-Math-PRM or Math-Shepherd format)."""

    model: str | None = Field(None, description='None: no PRM; "trained": trained from rollouts in 02_prm; or a PRM '
                                                "folder or hub id")
    format: Literal["auto", "token_classification", "qwen", "math_shepherd"] = Field(
        "auto", description="how the PRM reads steps (auto: from its folder)"
    )
    retrain: Literal["once", "every_iteration"] = Field(
        "once", description="trained: in iteration 1 only, or every iteration (the PRM follows the policy)"
    )
    samples: int = Field(1000, gt=0, description="trained: samples of the iteration whose steps are labelled")
    labels_from: Literal["rollouts", "search"] = Field(
        "rollouts", description="trained: Monte Carlo rollouts from each step's prefix, or the step values MCTS "
                                "backed up while sampling (sample.strategy: mcts; no extra rollouts)")
    rollouts: int = Field(4, gt=0, description="trained: continuations per distinct step prefix")
    reuse_samples: bool = Field(
        True, description="trained: count the iteration's samples drawn as the rollouts are (plain sampling, same "
                          "temperature, top-p, top-k, min-p) as more trajectories through the steps they share")
    temperature: float = Field(0.7, gt=0, description="trained: temperature of the rollouts")
    labels: Literal["soft", "hard", "relative"] = Field(
        "soft", description="trained: train on the share of successful rollouts (soft), on whether any succeeded "
                            "(hard), or on what the step changed: min(1, share after / share before) averaged with "
                            "how often the policy writes that step itself (relative; rollouts from the bare prompt too)"
    )
    pool_identical_steps: bool = Field(
        False, description="trained: give a step written word for word in several questions (an arithmetic line) one "
                           "target, the mean of its labels over the training samples, the last step aside; for steps "
                           "that are right or wrong whatever comes before them")
    heldout: float = Field(0.2, ge=0, lt=1, description="trained: share of the labelled questions kept out, to measure")
    backbone: str = Field(
        "base", description='trained: "base" (the run\'s starting model: a scratch run\'s untrained weights, or the '
                            'pretrained model), "policy" (the current policy\'s weights) or a model folder'
    )
    last_step_weight: float = Field(
        1.0, ge=0, description="trained: the last step's weight in the loss against 1 for every other step. Its "
                               "label is the outcome (0 or 1), which the PRM can hardly predict before it judges the "
                               "steps; with soft or relative labels a weight below 1 (0.25) lets the steps' signal "
                               "through")
    learning_rate: float = Field(1e-3, gt=0, description="trained: peak learning rate")
    num_epochs: float = Field(3.0, gt=0, description="trained: passes over the labelled samples")
    batch_size: int = Field(32, gt=0, description="trained: labelled samples per optimizer step")
    score_batch_size: int = Field(64, gt=0, description="completions per PRM forward pass when scoring")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="weights dtype for scoring (bfloat16: about twice as fast on AVX-512 bf16 CPUs, "
                               "step scores within about 0.03)"
    )

    @property
    def trained(self) -> bool:
        return self.model == "trained"


# ---------------------------------------------------------------------------------------------- eval
class EvalSetConfig(DatasetSource):
    """A second test set, to catch forgetting (e.g. GSM8K while training on arithmetic). Questions are asked with
    the task's system prompt unless this set names its own."""

    name: str = Field("gsm8k", pattern=r"^[A-Za-z0-9_-]+$", description="label in metrics.json and the report")
    split: str = Field("test", description="hub dataset split")
    num_questions: int | None = Field(100, gt=0, description="first N rows (None: all)")
    max_new_tokens: int = Field(256, gt=0, description="longest answer, in tokens")
    batch_size: int = Field(
        32, gt=0, description="prompts per generate call: long prompts of varied length pad less in small batches"
    )
    system_prompt_file: str | None = Field(None, description="system message for this set (None: the task's)")
    every_iteration: bool = Field(False, description="evaluate at every iteration (False: iteration 0 and the last)")


class EvalConfig(_Strict):
    """05_evaluate: greedy pass@1 on the test split; with `samples: k`, also maj@k and unbiased pass@k."""

    engine: Literal["auto", "transformers", "vllm"] = Field(
        "transformers", description="engine for the greedy answers (auto: vllm on a GPU where it is installed)")
    reward: str | None = Field(
        None, description="reward that judges each answer, correct at 1 or more (None: the filter's reward)")
    num_questions: int | None = Field(None, gt=0, description="test questions evaluated (None: all)")
    max_new_tokens: int = Field(64, gt=0, description="longest answer, in tokens")
    batch_size: int = Field(128, gt=0, description="prompts per generate call")
    strategy: Literal["greedy", "majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "mcts"] = Field(
        "greedy", description="how a test answer is chosen: one greedy answer, the majority of n sampled ones, or a "
                              "search guided by the PRM (test-time compute; with prm.model trained: greedy until a "
                              "PRM exists)")
    n: int = Field(4, gt=0, description="majority and search: answers (N) per test question")
    search: SearchConfig = Field(default_factory=SearchConfig, description="the search strategies' settings")
    samples: int = Field(0, ge=0, description="sampled answers per test question, for maj@k and pass@k (0: greedy only)")
    temperature: float = Field(0.7, gt=0, description="temperature of those samples")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus mass of those samples")
    second_set: EvalSetConfig | None = Field(None, description="another test set, to catch forgetting")


# Experiment trackers the pipeline logs to -> the module that must be installed for it.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class TrackingConfig(_Strict):
    """Experiment trackers (rft_helpers/tracking.py): one tracker run per RFT run."""

    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="trackers: TRL's trainers log their steps there, the pipeline each "
                                          "iteration's metrics and a table of test answers")
    project: str = Field("rft", description="wandb project / MLflow experiment the run is logged under")
    samples_logged: int = Field(8, ge=0, description="test answers logged as a table per iteration")


# --------------------------------------------------------------------------------------- stage configs
class SampleStageConfig(SampleConfig):
    """All that 01_sample reads: the sample section, the engines' settings and, with temperature auto, the
    filter its probe scores with."""

    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="engine vllm: the recipe's vllm section")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="engine openai: the recipe's openai section")
    filter: FilterConfig = Field(
        default_factory=FilterConfig, description="temperature auto: the filter the probe scores with; mcts "
                                                  "rollouts: the reward that judges them"
    )
    prm_model: PRMConfig = Field(default_factory=PRMConfig, description="a search strategy: the prm section")


class PRMStageConfig(PRMConfig):
    """All that 02_prm reads: the prm section, how the policy samples its rollouts (the sample section's engine,
    batch size and max_new_tokens, and the engines' settings) and the reward that judges them."""

    sample: SampleConfig = Field(default_factory=SampleConfig, description="the rollouts' engine and lengths")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="engine vllm: the recipe's vllm section")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="engine openai: the recipe's openai section")
    filter: FilterConfig = Field(default_factory=FilterConfig, description="its reward judges the rollouts")


class FilterStageConfig(FilterConfig):
    """All that 03_filter reads: the filter section and, with filter.prm, the PRM to score with."""

    prm_model: PRMConfig = Field(default_factory=PRMConfig, description="with prm: the recipe's prm section")


class TrainStageConfig(TrainConfig):
    """All that 04_train reads: the train section (in iteration 0, the warm-up's steps, rate and batch size on
    all weights) and, for GRPO, how it samples, the reward it trains with and the PRM beside it."""

    sample: SampleConfig = Field(
        default_factory=SampleConfig, description="grpo: its questions and n, temperature, top_p, max_new_tokens"
    )
    filter: FilterConfig = Field(default_factory=FilterConfig, description="grpo: the reward it trains with")
    prm_model: PRMConfig = Field(default_factory=PRMConfig, description="grpo with prm_weight: the prm section")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="the trackers the trainer logs to")


class EvalStageConfig(EvalConfig):
    """All that 05_evaluate reads: the eval section, its reward resolved, and the vLLM engine's settings."""

    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="engine vllm: the recipe's vllm section")
    prm_model: PRMConfig = Field(default_factory=PRMConfig, description="a search strategy: the prm section")


STAGE_CONFIGS: dict[str, type[BaseModel]] = {
    "sample": SampleStageConfig, "prm": PRMStageConfig, "filter": FilterStageConfig, "train": TrainStageConfig,
    "eval": EvalStageConfig,
}
# A stage config's field named here holds the RunConfig section of the other name (filter.prm is a setting of
# the filter; the filter stage reads the prm section as prm_model).
SECTION_FIELDS = {"prm_model": "prm"}


# ----------------------------------------------------------------------------------------------- run
SCHEDULED_SECTIONS = ("sample", "filter", "train")


class RunConfig(_Strict):
    """A whole run: `iterations` rounds of sample -> filter -> train -> evaluate after an evaluated iteration 0.

    Any sample, filter or train parameter may be a list: one value per iteration (`temperature: [0.5, 0.7, 0.9]`).
    Lists move to `schedules` and the section keeps the first value; `at_iteration(i)` gives the config of
    iteration i. A list shorter than the run holds its last value, so `--set iterations=5` extends a recipe."""

    run_name: str = Field("demo", pattern=r"^[A-Za-z0-9._-]+$", description="names the output folder")
    seed: int = Field(0, description="seeds data generation, model init, sampling and training")
    iterations: int = Field(3, ge=0, description="RFT iterations after iteration 0")
    output_dir: str | None = Field(None, description="run folder (None: outputs/<run_name>)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    prm: PRMConfig = Field(default_factory=PRMConfig)
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    schedules: dict[str, list[Any]] = Field(
        default_factory=dict, description="per-iteration values by dotted key (lists in the sections land here)"
    )

    @model_validator(mode="before")
    @classmethod
    def _lists_are_schedules(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data, schedules = dict(data), dict(data.get("schedules") or {})
        for section in SCHEDULED_SECTIONS:
            if not isinstance(data.get(section), dict):
                continue
            values = data[section] = dict(data[section])
            for key, value in values.items():
                if isinstance(value, list) and not key.startswith("auto_"):  # auto_temperatures is a list itself
                    if not value:
                        raise ValueError(f"{section}.{key}: an empty list; give one value per iteration")
                    schedules[f"{section}.{key}"], values[key] = value, value[0]
        return data | {"schedules": schedules}

    @model_validator(mode="after")
    def _schedules_are_valid(self) -> "RunConfig":
        for key, values in self.schedules.items():
            section, _, field = key.partition(".")
            if section not in SCHEDULED_SECTIONS or field not in type(getattr(self, section)).model_fields:
                raise ValueError(f"schedules: {key}: not a parameter of {', '.join(SCHEDULED_SECTIONS)}")
            if not values:
                raise ValueError(f"{key}: an empty list; give one value per iteration")
            for i, value in enumerate(values):
                try:
                    type(getattr(self, section)).model_validate(getattr(self, section).model_dump() | {field: value})
                except ValidationError as e:
                    raise ValueError(f"{key}[{i}] (iteration {i + 1}): {e.errors()[0]['msg']} (got {value!r})") from None
        return self

    @model_validator(mode="after")
    def _sections_fit_together(self) -> "RunConfig":
        """Rules between sections, at every iteration a schedule can reach: `rft validate` catches what would
        otherwise fail hours in."""
        if self.task.seed_size == 0 and self.warmup.max_steps:
            raise ValueError("warmup.max_steps: the warm-up trains on the seed set, but task.seed_size is 0; "
                             "set task.seed_size or warmup.max_steps: 0")
        for iteration in self.iterations_with_settings()[1:]:
            config = self.at_iteration(iteration)
            at = f" (iteration {iteration})" if self.schedules else ""
            if (config.filter.prm or config.train.prm_weight) and self.prm.model is None:
                used = "filter.prm" if config.filter.prm else "train.prm_weight"
                raise ValueError(f"{used}: the run has no PRM{at}; set prm.model (trained, or a PRM folder or hub id)")
            for name, section in (("sample", config.sample), ("eval", config.eval)):
                strategy = section.strategy
                if strategy in ("beam_search", "dvts") and section.n % section.search.beam_width:
                    raise ValueError(f"{name}.n: {section.n} is not a multiple of {name}.search.beam_width="
                                     f"{section.search.beam_width}{at}: {strategy} keeps N/M beams")
                if needs_prm(strategy, section.search.mcts_value, name == "sample") and self.prm.model is None:
                    raise ValueError(f"{name}.strategy: {strategy} is guided by a PRM but the run has none{at}; set "
                                     "prm.model (trained, or a PRM folder or hub id)"
                                     + (" or search.mcts_value: rollout" if strategy == "mcts" and name == "sample"
                                        else ""))
            if self.prm.trained and self.prm.labels_from == "search" and (
                    config.sample.strategy != "mcts" or iteration == 1 and config.sample.search.mcts_value != "rollout"):
                raise ValueError("prm.labels_from: search takes the step values MCTS backs up from its rollouts, so "
                                 "sample.strategy must be mcts with sample.search.mcts_value: rollout (before a PRM "
                                 f"exists){at}; or set prm.labels_from: rollouts")
            if self.prm.trained and self.prm.labels_from == "search" and self.prm.labels == "relative":
                raise ValueError("prm.labels: relative needs rollouts from each step's prefix; with "
                                 "prm.labels_from: search use soft or hard")
            if self.prm.trained and iteration == 1 and config.train.algorithm == "grpo":
                raise ValueError("prm.model: trained learns from iteration 1's samples, but train.algorithm grpo "
                                 "samples inside its trainer there; train SFT or DPO in iteration 1")
            check_trainer_args(config.train.trainer_args, config.train.algorithm, at)
            if config.train.baseline and self.task.seed_size == 0:
                raise ValueError(f"train.baseline: the baseline trains on the seed set, but task.seed_size is 0{at}; "
                                 "set task.seed_size or train.baseline: false")
            if config.train.algorithm != "grpo":
                continue
            if config.sample.temperature == "auto":
                raise ValueError(f"sample.temperature: auto cannot be used with train.algorithm grpo{at}: GRPO samples "
                                 "inside its trainer at one temperature; give a number")
            if config.train.batch_size % config.sample.n:
                raise ValueError(f"train.batch_size: {config.train.batch_size} completions per step is not a multiple of "
                                 f"sample.n={config.sample.n}{at}: GRPO compares a question's n samples within a step")
        return self

    def iterations_with_settings(self) -> range:
        """Iteration 0 and each one up to where the run and every schedule hold their last values."""
        return range(max([self.iterations, *(len(values) for values in self.schedules.values())]) + 1)

    def at_iteration(self, iteration: int) -> "RunConfig":
        """This config with every schedule at its value for `iteration` (iteration 0 takes the first value)."""
        config = self.model_copy(deep=True)
        for key, values in self.schedules.items():
            section, _, field = key.partition(".")
            setattr(getattr(config, section), field, values[min(max(iteration, 1), len(values)) - 1])
        return config

    def stage_config(self, section: str, iteration: int) -> BaseModel:
        """Everything the stage of `section` (sample, prm, filter, train, eval) reads at `iteration`: its section with
        the schedules resolved, plus the other sections its STAGE_CONFIGS class names. Iteration 0's train stage
        is the warm-up: plain SFT of all weights from the base model with the warm-up's steps, rate and batch."""
        if section not in STAGE_CONFIGS:
            raise ValueError(f"stage_config: unknown section {section!r}; choose one of {sorted(STAGE_CONFIGS)}")
        resolved = self.at_iteration(iteration)
        own = getattr(resolved, section).model_dump()
        if section == "train" and iteration == 0:
            own |= self.warmup.model_dump() | dict(algorithm="sft", method="full", init="base", mix_seed=False,
                                                   baseline=False)
            if resolved.train.algorithm != "sft":  # the warm-up is SFT: DPO's or GRPO's own fields do not apply
                own["trainer_args"] = {}
        if section == "eval":
            own["reward"] = own["reward"] or resolved.filter.reward
        stage_class = STAGE_CONFIGS[section]
        others = {name: getattr(resolved, SECTION_FIELDS.get(name, name)) for name in stage_class.model_fields
                  if name not in own}
        return stage_class(**own, **others)

    def trains_prm(self, iteration: int) -> bool:
        """Whether iteration `iteration` has a 02_prm stage: the PRM is trained in the loop, in iteration 1 or
        every iteration, from samples (GRPO iterations have none)."""
        if not self.prm.trained or iteration < 1 or self.at_iteration(iteration).train.algorithm == "grpo":
            return False
        return iteration == 1 or self.prm.retrain == "every_iteration"

    def schedule_values(self, iteration: int, section: str) -> dict[str, Any]:
        """The scheduled parameters of `section` at `iteration`, for metrics.json."""
        resolved = self.at_iteration(iteration)
        return {key: getattr(getattr(resolved, section), key.partition(".")[2])
                for key in self.schedules if key.startswith(f"{section}.")}

    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("outputs") / self.run_name


# ------------------------------------------------------------------------------------- loading + checks
_UNION_MEMBER = re.compile(r"^(constrained-)?(float|int|str|bool)$|^(literal|list|dict)\[")


def _field_path(loc: tuple) -> list[str]:
    """The field names of an error location, without the union member pydantic appends (temperature.float)."""
    return [str(p) for p in loc if not _UNION_MEMBER.match(str(p))]


def format_validation_error(source: str, err: ValidationError) -> str:
    """pydantic's errors as one line: `source: field: what is wrong (got value)`."""
    errors = err.errors()
    first = errors[0]
    loc = _field_path(first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if not loc:  # a check on the whole config: its message names the fields
        return f"{source}: {msg}"
    field = ".".join(loc)
    if first["type"] == "extra_forbidden":
        msg = "unknown key (see rft_helpers/config.py for the valid ones)"
    elif "input" in first and not isinstance(first["input"], (dict, list)) and loc[-1] not in SECRET_FIELDS:
        msg = f"{msg} (got {first['input']!r})"
    fields = {tuple(_field_path(e["loc"])) for e in errors}  # a union's members fail together: one field
    more = f" (+{len(fields) - 1} more)" if len(fields) > 1 else ""
    return f"{source}: {field}: {msg}{more}"


def config_from_dict(data: dict, source: str = "params") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None
