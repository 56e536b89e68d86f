"""One vLLM data-parallel replica of the sample stage: `python -m rft_helpers.stages.sample_replica REQUEST`.

`sampling.data_parallel` starts one such process per replica, on its own GPUs (or CPU cores), with a request
file naming the run, the iteration, the stage config and this rank's chunks. The replica builds its engine once,
samples its chunks exactly as the stage does here (`sample.sample_chunk`: same prompts, same per-chunk seeds),
writes each to samples.parts/ and reports its numbers in its result file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..config import SampleStageConfig
from ..run import Run
from ..sampling.data_parallel import wait_for_other_ranks
from .common import engine_from_settings
from .sample import question_chunks, sample_chunk


def main(request_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    run, iteration = Run(request["run_dir"]), request["iteration"]
    config = SampleStageConfig.model_validate(request["config"])
    chunks = question_chunks(run, iteration, config)
    parts = Path(request_path).parent
    engine = engine_from_settings("vllm", run.policy_model(iteration), dtype=run.config.model.dtype,
                         batch_size=config.batch_size, seed=run.iteration_seed(iteration), vllm=config.vllm)
    start, tokens = time.perf_counter(), 0
    for k in request["chunks"]:
        tokens += sample_chunk(run, iteration, config, engine, k, chunks[k], parts / f"{k:05d}.jsonl", progress=False)
    result = Path(request["result"])
    result.write_text(json.dumps({"rank": request["rank"], "chunks": request["chunks"], "completion_tokens": tokens,
                                  "seconds": round(time.perf_counter() - start, 2)}))
    wait_for_other_ranks(result, request["size"])
    engine.close()


if __name__ == "__main__":
    main(sys.argv[1])
