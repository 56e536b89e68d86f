import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rft_helpers.config import ScratchModelConfig
from rft_helpers.exceptions import ConfigError
from rft_helpers.models import load_model, load_tokenizer, save_scratch_model

TEXT = "7+5*3-4=?\n12 + 3 = 15\nAnswer: 15"


def test_char_tokenizer_round_trips_through_auto_tokenizer(tiny_model_dir):
    """AutoTokenizer must give back the same tokenizer: spaces and newlines survive."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(TEXT)
    assert tokenizer.decode(ids) == TEXT


def test_chat_template_and_end_of_turn(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "1+1=?"}], add_generation_prompt=True,
                                           tokenize=False)
    assert prompt == "<|user|>1+1=?<|end|><|assistant|>"
    assert tokenizer.eos_token == "<|end|>" and tokenizer.pad_token == "<pad>"
    assert tokenizer.padding_side == "left"


def test_qwen2_scratch_model_still_loads_its_tokenizer(tmp_path):
    """transformers reloads a qwen2 folder's tokenizer as Qwen2Tokenizer; load_tokenizer falls back to the saved one."""
    save_scratch_model(ScratchModelConfig(architecture="qwen2", hidden_size=16, num_layers=1, num_heads=2,
                                          intermediate_size=32), tmp_path / "q", 0)
    tokenizer = load_tokenizer(tmp_path / "q")
    assert tokenizer.decode(tokenizer(TEXT, add_special_tokens=False)["input_ids"]) == TEXT


def test_checkpoint_loads_with_from_pretrained(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and model.config.eos_token_id == load_tokenizer(tiny_model_dir).eos_token_id
    assert load_model(tiny_model_dir).dtype == torch.float32


def test_bad_model_folders_name_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: cannot load a tokenizer"):
        load_tokenizer(tmp_path / "empty")
    with pytest.raises(ConfigError, match="empty: cannot load a model"):
        load_model(tmp_path / "empty")
