"""Sampling, training and evaluation must see the same prompt text: the trainer's tokens for a training record
start with exactly the tokens the sampling engine feeds the model for that prompt."""

import pytest

from rft_helpers.data import build_prompt
from rft_helpers.records import train_example
from rft_helpers.models import load_model, load_tokenizer
from rft_helpers.sampling.hf import TransformersEngine


def _trainer_tokens(model_dir, example):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(model_dir.parent / "trainer"), report_to="none", bf16=False, use_cpu=True,
                     max_length=256)
    trainer = SFTTrainer(model=load_model(model_dir).train(), args=args, processing_class=load_tokenizer(model_dir),
                         train_dataset=Dataset.from_list([{"prompt": example["prompt"], "completion": example["completion"]}]))
    row = trainer.train_dataset[0]
    return row["input_ids"], row["labels"]


@pytest.mark.parametrize("system_prompt", [None, "Show your work."])
def test_training_text_starts_with_the_sampling_prompt(tiny_model_dir, system_prompt):
    prompt = build_prompt("12+34=?", system_prompt)
    example = train_example("q", prompt, "2+4=6\n1+3=4\nAnswer: 46")
    input_ids, labels = _trainer_tokens(tiny_model_dir, example)
    engine = TransformersEngine(load_model(tiny_model_dir), load_tokenizer(tiny_model_dir))
    (sampling_ids,) = engine.encode([prompt])  # evaluation uses the same engine and build_prompt

    n = len(sampling_ids)
    assert input_ids[:n] == sampling_ids  # the prompt tokens are identical
    assert labels[:n] == [-100] * n and labels[n:] == input_ids[n:]  # loss exactly on what the model must write
    tokenizer = load_tokenizer(tiny_model_dir)
    assert tokenizer.decode(input_ids[n:]) == "2+4=6\n1+3=4\nAnswer: 46" + tokenizer.eos_token
