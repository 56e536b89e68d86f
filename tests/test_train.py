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
