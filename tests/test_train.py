import pytest
import torch

from rft_helpers.models import load_model
from rft_helpers.train import sft_train

EXAMPLES = [
    {"prompt": [{"role": "user", "content": f"{a}+{b}=?"}],
     "completion": [{"role": "assistant", "content": f"{a}+{b}={a + b}\nAnswer: {a + b}"}]}
    for a in range(1, 5) for b in range(1, 5)
]


def _loss(model_dir, examples) -> float:
    """Mean completion loss, computed independently of the trainer."""
    from rft_helpers.models import load_tokenizer

    model, tok = load_model(model_dir), load_tokenizer(model_dir)
    losses = []
    for e in examples:
        prompt = tok.apply_chat_template(e["prompt"], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(e["prompt"] + e["completion"], tokenize=False)
        ids = tok(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
        labels = ids.clone()
        labels[:, : len(tok(prompt, add_special_tokens=False)["input_ids"])] = -100
        with torch.no_grad():
            losses.append(model(input_ids=ids, labels=labels).loss.item())
    return sum(losses) / len(losses)


def test_sft_changes_weights_and_lowers_loss_on_its_data(tiny_model_dir, tmp_path):
    out = tmp_path / "ckpt"
    result = sft_train(tiny_model_dir, EXAMPLES, out, learning_rate=3e-3, batch_size=8, max_steps=20)
    assert result.steps == 20 and result.examples == len(EXAMPLES)
    before, after = load_model(tiny_model_dir).state_dict(), load_model(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert _loss(out, EXAMPLES) < _loss(tiny_model_dir, EXAMPLES) - 0.5
    assert result.loss_history[-1] < result.loss_history[0]
    assert (out / "tokenizer_config.json").exists() and not list(tmp_path.glob(".ckpt.*"))  # renamed into place


def test_cpu_trainer_loss_equals_trl_loss(tiny_model_dir, tmp_path):
    """The model's own loss, used on CPUs for speed, is the loss TRL's tiled head computes on the same batch."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rft_helpers.models import load_tokenizer
    from rft_helpers.train import model_loss_sft_trainer

    model, tok = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to="none", use_cpu=True)
    dataset = Dataset.from_list(EXAMPLES)
    losses = []
    for trainer_class in (SFTTrainer, model_loss_sft_trainer()):
        trainer = trainer_class(model=model, args=args, train_dataset=dataset, processing_class=tok)
        batch = next(iter(trainer.get_train_dataloader()))
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model, dict(batch)).item())
    assert abs(losses[0] - losses[1]) < 1e-4 and losses[0] > 0.1


def test_lora_trains_adapters_and_saves_the_merged_model_with_its_adapter(tiny_model_dir, tmp_path):
    from rft_helpers.config import LoraSettings

    out = tmp_path / "lora"
    result = sft_train(tiny_model_dir, EXAMPLES, out, learning_rate=2e-2, batch_size=8, max_steps=20,
                       lora=LoraSettings(r=8, alpha=16))
    assert result.loss_history[-1] < result.loss_history[0]
    assert (out / "config.json").exists() and (out / "adapter" / "adapter_config.json").exists()
    assert _loss(out, EXAMPLES) < _loss(tiny_model_dir, EXAMPLES) - 0.3  # the merged weights learned
    before, after = load_model(tiny_model_dir).state_dict(), load_model(out).state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # adapters sit on the linear layers only: embeddings and norms are untouched
    assert changed and all("proj" in k for k in changed)


def test_unmerged_lora_stays_one_adapter_over_the_base_across_iterations(tiny_model_dir, tmp_path):
    from rft_helpers.config import LoraSettings
    from rft_helpers.models import adapter_base, is_adapter
    from rft_helpers.sampling import SamplingParams, get_engine

    settings = LoraSettings(r=4, alpha=8, merge=False)
    first, second = tmp_path / "iter1", tmp_path / "iter2"
    sft_train(tiny_model_dir, EXAMPLES, first, learning_rate=2e-2, batch_size=8, max_steps=10, lora=settings)
    assert is_adapter(first) and adapter_base(first) == str(tiny_model_dir)
    assert (first / "adapter_model.safetensors").stat().st_size < 200_000  # only the adapter is written
    sft_train(first, EXAMPLES, second, learning_rate=2e-2, batch_size=8, max_steps=10, lora=settings)
    assert is_adapter(second) and adapter_base(second) == str(tiny_model_dir)  # continued, not stacked
    assert _loss(second, EXAMPLES) < _loss(first, EXAMPLES) < _loss(tiny_model_dir, EXAMPLES)
    engine = get_engine("transformers", str(second))  # engines load the base with the adapter merged in
    assert len(engine.generate([EXAMPLES[0]["prompt"]], SamplingParams(temperature=0, max_new_tokens=4))[0]) == 1


def test_resume_continues_the_optimizer_and_the_step_count(tiny_model_dir, tmp_path):
    from rft_helpers.train import saved_steps

    first, resumed, restarted = tmp_path / "first", tmp_path / "resumed", tmp_path / "restarted"
    sft_train(tiny_model_dir, EXAMPLES, first, learning_rate=3e-3, batch_size=8, max_steps=6, save_state=True)
    assert saved_steps(first) == 6 and (first / "optimizer.pt").exists() and (first / "scheduler.pt").exists()
    result = sft_train(first, EXAMPLES, resumed, learning_rate=3e-3, batch_size=8, max_steps=4, resume=True,
                       save_state=True)
    assert result.steps == 4 and len(result.loss_history) == 4  # this call's steps and losses only
    assert saved_steps(resumed) == 10
    optimizer = torch.load(resumed / "optimizer.pt", weights_only=False)
    assert {int(s["step"]) for s in optimizer["state"].values()} == {10}  # Adam's moments carried on, not reset
    assert torch.load(resumed / "scheduler.pt", weights_only=False)["last_epoch"] == 10
    sft_train(first, EXAMPLES, restarted, learning_rate=3e-3, batch_size=8, max_steps=4, save_state=True)
    assert saved_steps(restarted) == 4  # without resume, a fresh optimizer
    epochs = sft_train(first, EXAMPLES, tmp_path / "epochs", learning_rate=3e-3, batch_size=8, resume=True)
    assert epochs.steps == 2  # one epoch of 16 examples at batch 8, on top of the 6 saved steps


def _logprob(model_dir, prompt, completion) -> float:
    """Summed log-probability of the completion's tokens after the chat-templated prompt."""
    from rft_helpers.models import load_tokenizer

    model, tok = load_model(model_dir), load_tokenizer(model_dir)
    prompt_ids = tok(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"]
    ids = tok(tok.apply_chat_template(prompt + completion, tokenize=False), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
    targets = torch.tensor(ids[1:])
    return logits[torch.arange(len(targets)), targets][len(prompt_ids) - 1:].sum().item()


def test_dpo_raises_the_chosen_over_the_rejected(tiny_model_dir, tmp_path):
    from rft_helpers.train import dpo_train

    pairs = [{"prompt": e["prompt"], "chosen": e["completion"],
              "rejected": [{"role": "assistant", "content": e["completion"][0]["content"].replace("Answer", "Wrong")}]}
             for e in EXAMPLES]
    out = tmp_path / "dpo"
    result = dpo_train(tiny_model_dir, pairs, out, beta=0.1, learning_rate=5e-3, batch_size=8, max_steps=12)
    assert result.steps == 12 and result.loss_history[-1] < result.loss_history[0]

    def margin(model_dir):
        return sum(_logprob(model_dir, p["prompt"], p["chosen"]) - _logprob(model_dir, p["prompt"], p["rejected"])
                   for p in pairs[:4])

    assert margin(out) > margin(tiny_model_dir) + 1.0


def test_dpo_with_an_sft_term_raises_the_chosen_likelihood_itself(tiny_model_dir, tmp_path):
    from rft_helpers.train import dpo_train

    pairs = [{"prompt": e["prompt"], "chosen": e["completion"],
              "rejected": [{"role": "assistant", "content": e["completion"][0]["content"].replace("Answer", "Wrong")}]}
             for e in EXAMPLES]
    common = dict(beta=0.1, learning_rate=5e-3, batch_size=8, max_steps=12)
    dpo_train(tiny_model_dir, pairs, tmp_path / "dpo", **common)
    dpo_train(tiny_model_dir, pairs, tmp_path / "rpo", sft_weight=1.0, **common)

    def chosen(model_dir):
        return sum(_logprob(model_dir, p["prompt"], p["chosen"]) for p in pairs[:4])

    assert chosen(tmp_path / "rpo") > chosen(tmp_path / "dpo") + 1.0  # the SFT term pulls the right answers up


def count_sevens(completions, **kwargs) -> list[float]:
    """A reward a random model can earn by chance, so GRPO's advantages are not all zero."""
    from rft_helpers.rewards import completion_text

    return [completion_text(c).count("7") / 4 for c in completions]


def test_grpo_samples_scores_and_updates_the_policy(tiny_model_dir, tmp_path):
    from rft_helpers.train import grpo_train

    questions = [{"prompt": e["prompt"], "answer": "7"} for e in EXAMPLES[:8]]
    out = tmp_path / "grpo"
    result = grpo_train(tiny_model_dir, questions, out, reward_fn=count_sevens, num_generations=4,
                        max_completion_length=12, temperature=1.0, learning_rate=1e-2, batch_size=8, max_steps=6)
    assert result.steps == 6 and len(result.reward_history) == 6
    before, after = load_model(tiny_model_dir).state_dict(), load_model(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert sum(result.reward_history[-2:]) > sum(result.reward_history[:2])  # it learns to write more sevens


def test_grpo_batch_must_hold_whole_groups(tiny_model_dir, tmp_path):
    import pytest

    from rft_helpers.train import grpo_train

    with pytest.raises(ValueError, match="train.batch_size: 6 completions per step is not a multiple of sample.n=4"):
        grpo_train(tiny_model_dir, [], tmp_path / "x", reward_fn=count_sevens, num_generations=4,
                   max_completion_length=8, temperature=1.0, learning_rate=1e-3, batch_size=6)


def test_training_on_two_processes_through_accelerate_launch(tiny_model_dir, tmp_path):
    """The multi-GPU path, run for real on two CPU processes (params/accelerate/cpu.yaml: DDP over gloo)."""
    from rft_helpers.launch import launch_training

    out, lines = tmp_path / "ddp", []
    result = launch_training("sft_train", [tiny_model_dir, EXAMPLES, out],
                             {"learning_rate": 3e-3, "batch_size": 4, "max_steps": 3, "lora": None},
                             num_processes=2, accelerate_config="cpu", log=lines.append)
    assert result.steps == 3 and len(result.loss_history) == 3
    assert "accelerate.commands.launch" in lines[0] and "--num_processes 2" in lines[0]
    epoch = launch_training("sft_train", [tiny_model_dir, EXAMPLES, tmp_path / "epoch"],
                            {"learning_rate": 3e-3, "batch_size": 4, "lora": None},
                            num_processes=2, accelerate_config="cpu", log=lines.append)
    assert epoch.steps == 2  # 16 examples in batches of 4 on each of 2 processes: two processes really ran
    before, after = load_model(tiny_model_dir).state_dict(), load_model(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not list(tmp_path.glob(".ddp.*"))  # one process wrote the checkpoint, renamed into place


def test_resume_on_two_processes_carries_the_optimizer_and_every_rank_rng(tiny_model_dir, tmp_path):
    from rft_helpers.launch import launch_training
    from rft_helpers.train import saved_steps

    first, resumed = tmp_path / "first", tmp_path / "resumed"
    common = {"learning_rate": 3e-3, "batch_size": 4, "lora": None, "save_state": True}
    launch_training("sft_train", [tiny_model_dir, EXAMPLES, first], common | {"max_steps": 3},
                    num_processes=2, accelerate_config="cpu", log=lambda line: None)
    assert saved_steps(first) == 3 and {p.name for p in first.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    result = launch_training("sft_train", [first, EXAMPLES, resumed], common | {"resume": True},
                             num_processes=2, accelerate_config="cpu", log=lambda line: None)
    assert result.steps == 2 and saved_steps(resumed) == 5  # one epoch: 16 examples / (4 per process x 2)
    optimizer = torch.load(resumed / "optimizer.pt", weights_only=False)
    assert {int(s["step"]) for s in optimizer["state"].values()} == {5}  # Adam's moments carried on, not reset
    assert not list(tmp_path.glob(".*"))  # no staging or temporary folder left beside the checkpoints


def test_unknown_accelerate_config_is_named(tmp_path):
    import pytest

    from rft_helpers.exceptions import ConfigError
    from rft_helpers.launch import accelerate_config_path

    assert accelerate_config_path("deepspeed_zero3").name == "deepspeed_zero3.yaml"
    with pytest.raises(ConfigError, match=r"train.accelerate_config: no such file: .*zero9.yaml \(names: cpu, ddp, "):
        accelerate_config_path("zero9")


def test_padding_free_keeps_packed_examples_apart_and_trains_like_padded_batches(tiny_model_dir, tmp_path):
    """A padding-free batch is one row of concatenated examples. In a training forward (no cache, no attention
    mask) transformers derives a block-diagonal mask from the position ids, so each example sees only itself.
    With a KV cache it does not: the session-4 refusal of padding-free on CPUs came from testing that way."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from rft_helpers.models import load_tokenizer

    model, tok = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    rows = [tok(tok.apply_chat_template(e["prompt"] + e["completion"], tokenize=False),
                add_special_tokens=False)["input_ids"] for e in EXAMPLES[:3]]
    packed = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(
        [{"input_ids": ids} for ids in rows])
    second = slice(len(rows[0]), len(rows[0]) + len(rows[1]))
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([rows[1]])).logits[0]
        apart = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        cached = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=True).logits[0]
    assert (apart[second] - alone).abs().max() < 1e-4
    assert (cached[second] - alone).abs().max() > 1e-3  # what a cache-building forward would do

    # Same batches (same seed, same sampler), so the same losses step for step, padded or packed.
    common = dict(learning_rate=1e-3, batch_size=4, max_steps=3)
    padded = sft_train(tiny_model_dir, EXAMPLES, tmp_path / "padded", **common)
    packed_run = sft_train(tiny_model_dir, EXAMPLES, tmp_path / "packed", batching="padding_free", **common)
    assert packed_run.loss_history == pytest.approx(padded.loss_history, rel=1e-4)
    grouped = sft_train(tiny_model_dir, EXAMPLES, tmp_path / "grouped", batching="length_grouped", **common)
    assert grouped.steps == 3


def test_grpo_takes_the_prm_as_a_second_reward_with_its_weight(tiny_model_dir, tmp_path, monkeypatch):
    """The PRM's aggregated step score joins the outcome reward, weighted (TRL's reward_weights)."""
    from transformers import LlamaConfig, LlamaForTokenClassification

    from rft_helpers.models import load_tokenizer, save_checkpoint
    from rft_helpers.prm.reward import PRMReward
    from rft_helpers.train import grpo_train

    tokenizer = load_tokenizer(tiny_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    save_checkpoint(LlamaForTokenClassification(config), tokenizer, tmp_path / "prm")
    calls, real = [], PRMReward.__call__

    def recorded(self, completions, **kwargs):
        scores = real(self, completions, **kwargs)
        calls.append((self.aggregation, len(completions), "prompts" in kwargs, scores))
        return scores

    monkeypatch.setattr(PRMReward, "__call__", recorded)
    seen = {}
    import trl

    original = trl.GRPOConfig.__init__

    def capture(self, *args, **kwargs):
        seen["reward_weights"] = kwargs.get("reward_weights")
        original(self, *args, **kwargs)

    monkeypatch.setattr(trl.GRPOConfig, "__init__", capture)
    questions = [{"prompt": e["prompt"], "answer": "7"} for e in EXAMPLES[:4]]
    result = grpo_train(tiny_model_dir, questions, tmp_path / "grpo", reward_fn=count_sevens, num_generations=4,
                        max_completion_length=8, temperature=1.0, learning_rate=1e-3, batch_size=8, max_steps=2,
                        prm={"path": str(tmp_path / "prm"), "aggregation": "last"}, prm_weight=0.5)
    assert result.steps == 2 and seen["reward_weights"] == [1.0, 0.5]
    assert [c[:3] for c in calls] == [("last", 8, True)] * 2  # every step's completions, with GRPO's prompts
    assert all(s is None or 0 <= s <= 1 for c in calls for s in c[3])


# ------------------------------------------------------------------------- the optimizer settings of a recipe
def _rates(tiny_model_dir, tmp_path, **settings):
    return sft_train(tiny_model_dir, EXAMPLES, tmp_path / "ckpt", learning_rate=1e-3, batch_size=4, **settings)


def test_a_constant_schedule_keeps_the_rate_and_cosine_follows_its_curve(tiny_model_dir, tmp_path):
    import math

    constant = _rates(tiny_model_dir, tmp_path, lr_scheduler="constant", warmup_ratio=0.0)
    assert constant.steps == 4 and constant.learning_rates == pytest.approx([1e-3] * 4)
    cosine = _rates(tiny_model_dir, tmp_path, lr_scheduler="cosine", warmup_ratio=0.0)
    # the rate each of the 4 steps was taken with: lr * (1 + cos(pi * k / 4)) / 2, k = 0 .. 3
    assert cosine.learning_rates == pytest.approx([1e-3 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)])
    linear = _rates(tiny_model_dir, tmp_path)  # the default: 5% warm-up (one step here), then linear decay to 0
    assert linear.learning_rates == pytest.approx([0.0, 1e-3, 2e-3 / 3, 1e-3 / 3])


def test_accumulation_changes_the_optimizer_steps_not_the_examples_seen(tiny_model_dir, tmp_path):
    plain = _rates(tiny_model_dir, tmp_path, num_epochs=1.0)
    accumulated = _rates(tiny_model_dir, tmp_path, num_epochs=1.0, gradient_accumulation_steps=2)
    assert (plain.steps, accumulated.steps) == (4, 2)  # 16 examples: 4 batches of 4, two per step
    assert plain.epochs == accumulated.epochs == pytest.approx(1.0)


def test_every_optimizer_setting_and_trainer_arg_reaches_the_trainer(tiny_model_dir, tmp_path):
    from trl import SFTConfig

    from rft_helpers.train import model_loss_sft_trainer, train

    seen = []

    class RecordingConfig(SFTConfig):
        def __post_init__(self):
            super().__post_init__()
            seen.append(self)

    records = [{"prompt": e["prompt"], "completion": e["completion"]} for e in EXAMPLES]
    train(tiny_model_dir, records, tmp_path / "ckpt", RecordingConfig, model_loss_sft_trainer(), learning_rate=1e-3,
          batch_size=4, max_steps=1, lr_scheduler="cosine_with_restarts", warmup_ratio=0.2, weight_decay=0.1,
          max_grad_norm=0.3, gradient_accumulation_steps=2, user_trainer_args={"adam_beta2": 0.95})
    (args,) = seen
    assert (args.lr_scheduler_type, args.warmup_steps, args.weight_decay, args.max_grad_norm,
            args.gradient_accumulation_steps, args.adam_beta2) == ("cosine_with_restarts", 0.2, 0.1, 0.3, 2, 0.95)


@pytest.mark.parametrize("trainer_args, message", [
    ({"adam_beta3": 0.9}, "train.trainer_args.adam_beta3: not a field of trl.SFTConfig"),
    ({"output_dir": "x"}, "train.trainer_args.output_dir: set by the toolkit; it cannot be changed"),
    ({"lr_scheduler_type": "cosine"}, "train.trainer_args.lr_scheduler_type: set by the toolkit; use train.lr_scheduler"),
    ({"per_device_train_batch_size": 2}, "use train.batch_size"),
])
def test_validate_refuses_trainer_args_that_are_unknown_or_the_toolkits(smoke_config, trainer_args, message):
    from pydantic import ValidationError

    from rft_helpers.config import RunConfig

    data = smoke_config.model_dump(exclude={"schedules"})
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate(data | {"train": data["train"] | {"trainer_args": trainer_args}})
    dpo = data | {"train": data["train"] | {"algorithm": "dpo", "trainer_args": {"loss_type": ["ipo"]}}}
    assert RunConfig.model_validate(dpo).train.trainer_args == {"loss_type": ["ipo"]}  # a DPOConfig field


def test_the_warmup_takes_its_own_schedule_and_the_trainer_args_of_sft_only(smoke_config):
    from rft_helpers.config import RunConfig

    data = smoke_config.model_dump(exclude={"schedules"})
    config = RunConfig.model_validate(data | {
        "warmup": data["warmup"] | {"lr_scheduler": "constant", "weight_decay": 0.01},
        "train": data["train"] | {"lr_scheduler": "cosine", "gradient_accumulation_steps": 4,
                                  "algorithm": "dpo", "trainer_args": {"loss_type": ["ipo"]}}})
    warmup, rft = config.stage_config("train", 0), config.stage_config("train", 1)
    assert (warmup.lr_scheduler, warmup.weight_decay, warmup.gradient_accumulation_steps) == ("constant", 0.01, 1)
    assert warmup.trainer_args == {} and rft.trainer_args == {"loss_type": ["ipo"]}
    assert (rft.lr_scheduler, rft.gradient_accumulation_steps) == ("cosine", 4)


KILL_AFTER_FIRST_SAVE = """
import json, os, signal, sys
import transformers
from rft_helpers.train import sft_train

save = transformers.Trainer._save_checkpoint
def save_then_die(self, *args, **kwargs):  # a kill right after the trainer's first save
    save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
transformers.Trainer._save_checkpoint = save_then_die
model, examples, out = sys.argv[1:]
sft_train(model, json.load(open(examples)), out, learning_rate=3e-3, batch_size=4, max_steps=12, save_every_steps=4)
"""


def test_a_killed_training_resumes_at_its_last_save_with_the_same_final_weights(tiny_model_dir, tmp_path):
    import json
    import subprocess
    import sys

    whole = sft_train(tiny_model_dir, EXAMPLES, tmp_path / "whole", learning_rate=3e-3, batch_size=4, max_steps=12,
                      save_every_steps=4)
    assert whole.resumed_from_step is None and not list(tmp_path.glob(".whole.*"))  # nothing left beside it
    (tmp_path / "examples.json").write_text(json.dumps(EXAMPLES))
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_SAVE, str(tiny_model_dir),
                             str(tmp_path / "examples.json"), str(tmp_path / "killed")], timeout=600)
    assert killed.returncode == -9 and not (tmp_path / "killed").exists()
    assert [p.name for p in (tmp_path / ".killed.resume").glob("checkpoint-*")] == ["checkpoint-4"]
    resumed = sft_train(tiny_model_dir, EXAMPLES, tmp_path / "killed", learning_rate=3e-3, batch_size=4,
                        max_steps=12, save_every_steps=4)
    assert resumed.resumed_from_step == 4 and resumed.steps == 12 and len(resumed.loss_history) == 12
    assert not (tmp_path / ".killed.resume").exists()
    a, b = load_model(tmp_path / "whole").state_dict(), load_model(tmp_path / "killed").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # as if it had never been killed
