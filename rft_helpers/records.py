"""The records the stages write and read: one JSON object per line, each file loadable with
`datasets.load_dataset("json", data_files=...)`.

Prompts and completions are chat messages everywhere (`[{"role": "assistant", "content": "..."}]` for a
completion), the conversational format TRL's trainers take as it is. Each class below describes one file's rows;
the builder functions make them, and `read_records` checks a file against its class, naming the file, line and
field of a row that does not fit.

    data/{train,test,seed}.jsonl   Question
    iter_NN/samples.jsonl          Sample
    iter_NN/scored.jsonl           Scored (a Sample and its scores)
    iter_NN/train.jsonl            TrainExample (also the seed set's reference solutions, when trained on)
    iter_NN/pairs.jsonl            Pair
    iter_NN/prm_labels.jsonl       StepLabels
    iter_NN/predictions*.jsonl     Prediction
    iter_NN/sampled_predictions*.jsonl   SampledPrediction
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .exceptions import DataError
from .io import iter_jsonl

Messages = list[dict[str, str]]  # chat messages: {"role": "system" | "user" | "assistant", "content": "..."}


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grouped(Record):
    """Fields that group test questions for per-group accuracy (GROUP_FIELDS)."""

    kind: str | None = Field(None, description="word_arithmetic: the operation and operand size, e.g. '+ 2-digit'")
    level: str | None = Field(None, description="MATH: the difficulty level")
    subject: str | None = Field(None, description="MATH: the subject")


class Question(Grouped):
    """A task row: a question and its reference answer (data/train.jsonl, test.jsonl, seed.jsonl)."""

    id: str = Field(description="unique within the run, e.g. addition-00042")
    question: str = Field(description="the question as the user asks it")
    answer: str = Field(description="the reference final answer")
    solution: str = Field("", description="a reference worked solution ('' when the source has none)")


class Sample(Record):
    """One completion of a training question (samples.jsonl)."""

    id: str = Field(description="the question's id")
    sample_index: int = Field(description="which of the question's n samples (0 .. n-1)")
    prompt: Messages = Field(description="the chat messages the model answered: system prompt and question")
    completion: Messages = Field(description="what the model wrote, as one assistant message")
    answer: str = Field(description="the question's reference final answer")
    prompt_tokens: int = Field(description="prompt length in tokens (through the chat template)")
    completion_tokens: int = Field(description="completion length in tokens")
    finish_reason: Literal["stop", "length"] = Field(description="stop: end of turn or a stop string; length: cut off")
    sampling: dict = Field(description="the SamplingParams it was drawn with, plus the engine and the model")


class Scored(Sample):
    """A sample, its scores and the filter's verdict (scored.jsonl)."""

    rewards: dict[str, float | None] = Field(description="reward name -> score (None: the reward could not judge)")
    extracted_answer: str | None = Field(description="the final answer read from the completion")
    kept: bool = Field(description="whether the sample is trained on")
    reject_reason: str | None = Field(description="the first filter that dropped it (None when kept)")
    step_scores: list[float] | None = Field(None, description="with filter.prm: the PRM's score of each step")
    process_correct: bool | None = Field(None, description="generated tasks: every step is the reference's "
                                                           "(measured only, never used to filter)")


class TrainExample(Record):
    """An SFT example: a prompt and the completion to learn (train.jsonl; the seed set's reference solutions)."""

    id: str = Field(description="the question's id")
    prompt: Messages = Field(description="chat messages before the answer")
    completion: Messages = Field(description="the answer to learn, as one assistant message (the loss covers it only)")


class Pair(Record):
    """A DPO pair from one question's samples: a kept completion against a wrong one (pairs.jsonl)."""

    id: str = Field(description="the question's id")
    prompt: Messages = Field(description="chat messages before the answer")
    chosen: Messages = Field(description="a kept completion")
    rejected: Messages = Field(description="a different completion the reward judged wrong")


class StepLabels(Record):
    """A sample's steps and their Monte Carlo labels, in TRL's stepwise format plus the shares and the split
    (prm_labels.jsonl)."""

    id: str = Field(description="the question's id")
    sample_index: int = Field(description="which of the question's samples")
    prompt: Messages = Field(description="chat messages before the answer")
    completions: list[str] = Field(description="the sample's steps, in order (TRL's name)")
    labels: list[bool] = Field(description="whether each step is right, by its rollouts (TRL's name)")
    success: list[float] = Field(description="the share of the trajectories through each step (rollouts and pooled "
                                             "samples) that reached the right answer (the last step: the sample's "
                                             "own outcome)")
    agreement: list[float | None] | None = Field(
        None, description="the share of the other trajectories through the previous prefix (for the first step: the "
                          "bare prompt) that wrote this very step; None where no other one passed there")
    prompt_success: float | None = Field(None, description="relative labels: the share of the bare prompt's "
                                                           "trajectories that reached the right answer")
    targets: list[float] | None = Field(
        None, description="what the PRM trains on at each step: the prm.labels target, or with "
                          "prm.pool_identical_steps its mean over the training steps written the same way")
    heldout: bool = Field(False, description="kept out of the PRM's training, to measure it")
    truth: list[bool] | None = Field(None, description="generated tasks: whether each step is the reference's")


class Prediction(Grouped):
    """A greedy answer to a test question (predictions.jsonl, predictions_<set>.jsonl)."""

    id: str = Field(description="the question's id")
    question: str = Field(description="the question")
    answer: str = Field(description="the reference final answer")
    completion: Messages = Field(description="the model's answer, as one assistant message")
    extracted_answer: str | None = Field(description="the final answer read from the completion")
    reward: float | None = Field(description="the eval reward's score")
    correct: bool = Field(description="the reward is 1 or more")
    process_correct: bool | None = Field(None, description="generated tasks: every step is the reference's")


class SampledPrediction(Grouped):
    """k sampled answers to a test question, for maj@k and pass@k (sampled_predictions.jsonl)."""

    id: str = Field(description="the question's id")
    answer: str = Field(description="the reference final answer")
    answers: list[str | None] = Field(description="the final answer read from each sample")
    correct: list[bool] = Field(description="whether each sample is correct (its reward is 1 or more)")
    majority: str | None = Field(description="the most common answer, equivalent forms voting together")
    majority_correct: bool = Field(description="whether the majority answer is correct")


# ------------------------------------------------------------------------------------------------ builders
def assistant(text: str) -> Messages:
    """A completion in the one format every record uses."""
    return [{"role": "assistant", "content": text}]


def completion_text(completion: str | Messages) -> str:
    """The text of a completion: the assistant messages' content (a plain string is its own text)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role") == "assistant")


def question_record(row_id: str, question: str, answer: str, solution: str = "", **groups: str) -> dict:
    return {"id": row_id, "question": question, "answer": answer, "solution": solution, **groups}


def sample_record(question: dict, sample_index: int, prompt: Messages, text: str, prompt_tokens: int,
                  completion_tokens: int, finish_reason: str, sampling: dict) -> dict:
    return {"id": question["id"], "sample_index": sample_index, "prompt": prompt, "completion": assistant(text),
            "answer": question["answer"], "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "finish_reason": finish_reason, "sampling": sampling}


def train_example(row_id: str, prompt: Messages, text: str) -> dict:
    return {"id": row_id, "prompt": prompt, "completion": assistant(text)}


def pair_record(row_id: str, prompt: Messages, chosen: Messages, rejected: Messages) -> dict:
    return {"id": row_id, "prompt": prompt, "chosen": chosen, "rejected": rejected}


GROUP_FIELDS = tuple(Grouped.model_fields)  # per-group accuracy when test rows carry them (MATH: level, subject)


def group_fields(row: dict) -> dict:
    """The grouping fields a question carries, to copy onto its predictions."""
    return {name: row[name] for name in GROUP_FIELDS if row.get(name) is not None}


# ------------------------------------------------------------------------------------------------- checks
def check_rows(rows: list[dict], record: type[Record], source: str | Path) -> list[dict]:
    """`rows` unchanged when each fits `record`; else a DataError naming the row and the field."""
    for index, row in enumerate(rows, 1):
        try:
            record.model_validate(row)
        except ValidationError as e:
            error = e.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "row"
            raise DataError(f"{source}: row {index}: {field}: {error['msg']} (not a {record.__name__} record; "
                            "see rft_helpers/records.py)") from None
    return rows


def read_records(path: str | Path, record: type[Record]) -> list[dict]:
    """The rows of a JSONL file, checked against `record`."""
    return check_rows(list(iter_jsonl(path)), record, path)
