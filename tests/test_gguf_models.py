"""GGUF models: a small GGUF written here with the `gguf` package, converted, and compared before/after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rft_helpers.recipes import load_config
from rft_helpers.preflight import check_paths
from rft_helpers.exceptions import ConfigError
from rft_helpers.gguf_models import convert_gguf, resolve_folder
from rft_helpers.models import load_model, load_tokenizer

HIDDEN, FFN, HEADS, KV_HEADS, LAYERS = 32, 64, 4, 2, 2
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_level_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet: a byte-level BPE vocabulary with no merges."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    import gguf

    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + _byte_level_tokens() + ["\u0120t"]  # Ġt: " t"
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * 257
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["\u0120 t"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)

    def tensor(name, *shape):
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    tensor("token_embd.weight", len(tokens), HIDDEN)
    tensor("output_norm.weight", HIDDEN)
    tensor("output.weight", len(tokens), HIDDEN)
    kv = HIDDEN // HEADS * KV_HEADS
    for i in range(LAYERS):
        tensor(f"blk.{i}.attn_norm.weight", HIDDEN)
        tensor(f"blk.{i}.ffn_norm.weight", HIDDEN)
        tensor(f"blk.{i}.attn_q.weight", HIDDEN, HIDDEN)
        tensor(f"blk.{i}.attn_k.weight", kv, HIDDEN)
        tensor(f"blk.{i}.attn_v.weight", kv, HIDDEN)
        tensor(f"blk.{i}.attn_output.weight", HIDDEN, HIDDEN)
        tensor(f"blk.{i}.ffn_gate.weight", FFN, HIDDEN)
        tensor(f"blk.{i}.ffn_up.weight", FFN, HIDDEN)
        tensor(f"blk.{i}.ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_conversion_round_trip_keeps_outputs_and_is_cached(tmp_path, cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    converted = convert_gguf(str(tmp_path), "tiny.gguf")
    assert converted.is_relative_to(cache) and (converted / "model.safetensors").exists()

    original = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf").eval()
    original_tok = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    model, tokenizer = load_model(converted), load_tokenizer(converted)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 12 + 7?"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text == "<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert ids.tolist() == original_tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"].tolist()
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, model(ids).logits, atol=1e-5)

    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(str(tmp_path), "tiny.gguf") == converted  # reused, not converted again
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    assert gguf_path.exists()


def test_missing_and_corrupt_gguf_files_are_named(tmp_path, cache):
    config = load_config(None, [f"model.name_or_path={tmp_path}", "model.gguf_file=absent.gguf"])
    with pytest.raises(ConfigError, match=r"model.gguf_file: no such file: .*absent.gguf"):
        check_paths(config)
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + bytes(range(200)))
    with pytest.raises(ConfigError, match=r"broken.gguf: not a readable GGUF model"):
        convert_gguf(str(tmp_path), "broken.gguf")
    assert not cache.exists() or not any(cache.rglob("config.json"))


def test_package_folders(tmp_path):
    assert resolve_folder("package:rft_helpers") == Path(__file__).resolve().parent.parent / "rft_helpers"
    with pytest.raises(ConfigError, match="package 'no_such_pkg' is not installed"):
        resolve_folder("package:no_such_pkg")
