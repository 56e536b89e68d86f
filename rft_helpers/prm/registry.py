"""PRM formats by name, and `load_prm`, which tells them apart from what a folder holds."""

from __future__ import annotations

from pathlib import Path

import torch

from ..exceptions import ConfigError
from .base import ProcessRewardModel
from .loading import check_exists, read_prm_config
from .math_shepherd import MathShepherdPRM
from .qwen import QwenPRM
from .token_classification import TokenClassificationPRM

PRMS: dict[str, type[ProcessRewardModel]] = {cls.format: cls for cls in (TokenClassificationPRM, QwenPRM,
                                                                          MathShepherdPRM)}


def detect_format(path: str | Path) -> str:
    """token_classification for what this toolkit trains (prm_config.json) or any *ForTokenClassification head
    whose tokenizer has no <extra_0>; qwen for a Qwen PRM (<extra_0> in the vocabulary, or its remote-code
    architecture); math_shepherd for a causal LM whose tokenizer has the step tag ки."""
    from transformers import AutoConfig, AutoTokenizer

    check_exists(path)
    if "format" in read_prm_config(path):
        return read_prm_config(path)["format"]
    try:
        architectures = AutoConfig.from_pretrained(str(path), trust_remote_code=True).architectures or []
        vocabulary = AutoTokenizer.from_pretrained(str(path), trust_remote_code=True).get_vocab()
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read a PRM's config and tokenizer ({str(e).splitlines()[0]})") from None
    if "<extra_0>" in vocabulary or any(a.endswith("ForProcessRewardModel") for a in architectures):
        return QwenPRM.format
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return TokenClassificationPRM.format
    if any(a.endswith("ForCausalLM") for a in architectures) and any("ки" in token for token in vocabulary):
        return MathShepherdPRM.format
    raise ConfigError(f"{path}: not a process reward model: no two-label token-classification head "
                      f"(architectures {architectures}) and no step tag (<extra_0> or ки) in its tokenizer")


def load_prm(path: str | Path, format: str = "auto", dtype: str = "float32", batch_size: int = 32) -> ProcessRewardModel:
    """The PRM at `path` (a folder or a hub id) in `format` (auto: `detect_format`)."""
    name = detect_format(path) if format == "auto" else format
    if name not in PRMS:
        raise ConfigError(f"prm.format: unknown format {name!r}; choose one of {sorted(PRMS)} or auto")
    prm = PRMS[name].load(path, {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                 "float16": torch.float16}.get(dtype, torch.float32))
    prm.batch_size = batch_size
    return prm
