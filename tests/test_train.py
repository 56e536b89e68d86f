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
