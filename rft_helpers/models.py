"""Loading models, and building the tiny from-scratch model of the embedded default.

The scratch model is a real transformers causal LM (Qwen2 or Llama) with a character-level tokenizer and its
own chat template, saved with `save_pretrained` like any checkpoint. Its `tokenizer_config.json` names
`PreTrainedTokenizerFast`, because `AutoTokenizer` would otherwise reload it as a Qwen2 tokenizer that silently
drops spaces and newlines (see shared/STACK-NOTES.md); `load_tokenizer` checks the round trip.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Callable

import torch

from .config import ScratchModelConfig
from .exceptions import ConfigError
from .io import atomic_replace_dir

SPECIAL_TOKENS = ["<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_GENERIC_TOKENIZER_CLASSES = {"TokenizersBackend", "PreTrainedTokenizerFast"}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def build_char_tokenizer():
    """Printable ASCII plus newline, one token per character, and the chat special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\t\r\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({c: len(SPECIAL_TOKENS) + i for i, c in enumerate(chars)})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<|end|>", bos_token=None, unk_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:4]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_scratch_model(config: ScratchModelConfig, vocab_size: int, pad_id: int, eos_id: int, seed: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    model_config = AutoConfig.for_model(
        config.architecture,
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(model_config)


def save_scratch_model(config: ScratchModelConfig, out_dir: Path, seed: int) -> Path:
    """Build the tiny model + tokenizer and save them as a checkpoint folder (atomically)."""
    out_dir = Path(out_dir)
    tokenizer = build_char_tokenizer()
    model = build_scratch_model(config, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    save_checkpoint(model, tokenizer, out_dir)
    return out_dir


def save_checkpoint(model, tokenizer, out_dir: str | Path, merge_adapter: bool = False,
                    extra: Callable[[Path], None] | None = None, state_dict: dict | None = None) -> None:
    """Save model + tokenizer into a temporary sibling folder, then rename it over `out_dir`: a killed run never
    leaves a half-written checkpoint. A PEFT model is saved as its adapter; with `merge_adapter`, as the merged
    model, with the adapter kept in out_dir/adapter. `extra(folder)` writes more files (the trainer state);
    `state_dict` replaces the model's own (weights gathered from several processes)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    if merge_adapter:
        model.save_pretrained(tmp / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    _pin_generic_tokenizer_class(tmp)
    if extra is not None:
        extra(tmp)
    atomic_replace_dir(tmp, out_dir)


def _pin_generic_tokenizer_class(folder: Path) -> None:
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("tokenizer_class") in _GENERIC_TOKENIZER_CLASSES:
        # A generic tokenizer (ours): pin the class, or AutoTokenizer reloads it as the model type's tokenizer
        # (Qwen2Tokenizer) with another pre-tokenizer that drops spaces and newlines.
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(cfg, indent=2))


def load_tokenizer(path: str | Path, chat_template: bool = True):
    """The tokenizer saved with a model; `chat_template`: it must have one (every policy does; a PRM that reads
    plain text, as Math-Shepherd's, need not)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load a tokenizer ({str(e).splitlines()[0]})") from None
    probe = "a b\nc"
    if tokenizer.decode(tokenizer(probe, add_special_tokens=False)["input_ids"]) != probe:
        # A character tokenizer reloaded as the model type's tokenizer (qwen2 does this): load it as saved.
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    if chat_template and tokenizer.chat_template is None:
        raise ConfigError(f"{path}: the tokenizer has no chat template; add one to tokenizer_config.json")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation pads on the left; the trainer sets its own side
    return tokenizer


def is_adapter(path: str | Path) -> bool:
    """A LoRA checkpoint saved without merging: adapter weights over the base model its config names."""
    return (Path(path) / "adapter_config.json").is_file() and not (Path(path) / "config.json").is_file()


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file() or is_adapter(path)


def adapter_base(path: str | Path) -> str:
    """The model an adapter folder was trained over (a folder or a hub id)."""
    return json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]


def adapter_rank(path: str | Path) -> int:
    return int(json.loads((Path(path) / "adapter_config.json").read_text())["r"])


def load_model(path: str | Path, dtype: str = "float32", attn_implementation: str | None = None):
    """A causal LM from a folder or hub id; an adapter folder is loaded over its base and merged (plain inference)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if is_adapter(path):
        from peft import PeftModel

        base = load_model(adapter_base(path), dtype, attn_implementation)
        return PeftModel.from_pretrained(base, str(path)).merge_and_unload().eval()
    hf_logging.disable_progress_bar()  # a bar per weight load clutters the executed notebooks
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=_DTYPES[dtype],
                                                     attn_implementation=attn_implementation)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load a model ({str(e).splitlines()[0]})") from None
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()  # the Trainer would move it too
