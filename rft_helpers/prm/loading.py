"""Loading a PRM folder or hub id with one-line errors that name it: a path that does not exist, a model without
the head its format reads, a tokenizer without the step tag."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..exceptions import ConfigError
from ..models import load_tokenizer
from ..paths import is_local_path


def check_exists(path: str | Path) -> None:
    if is_local_path(str(path)) and not Path(path).expanduser().exists():
        raise ConfigError(f"prm.model: no such PRM folder: {path}")


def read_prm_config(path: str | Path) -> dict:
    """What this toolkit saves beside a PRM it trained (its format and step separator); {} for others."""
    config = Path(path) / "prm_config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def load_checked(path: str | Path, auto_class, dtype: torch.dtype, labels: int | None = None,
                 chat_template: bool = True, **options):
    """(model, tokenizer) from `path` with `auto_class`; with `labels`, the head must have that many."""
    check_exists(path)
    try:
        model = auto_class.from_pretrained(str(path), dtype=dtype, **options)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{path}: cannot load a PRM with {auto_class.__name__} ({str(e).splitlines()[0]})") from None
    if labels is not None and getattr(model.config, "num_labels", None) != labels:
        raise ConfigError(f"{path}: a PRM needs a head with {labels} labels (right/wrong); this one has "
                          f"{getattr(model.config, 'num_labels', None)}")
    tokenizer = load_tokenizer(path, chat_template=chat_template)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tokenizer


def tag_id(tokenizer, tag: str, path: str | Path) -> int:
    """The id of a token the format reads (a step tag like <extra_0> or ки, a label like +), which the tokenizer
    must have as one token (after a space, as it follows the text)."""
    last = tokenizer(f" {tag}", add_special_tokens=False)["input_ids"][-1]
    if tokenizer.decode([last]).strip() != tag:
        raise ConfigError(f"{path}: the tokenizer has no token {tag!r}; this PRM format reads one after each step")
    return last
