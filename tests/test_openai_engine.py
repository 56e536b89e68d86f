"""The openai engine against a real local HTTP server (rft_helpers.sampling.openai_server) serving the tiny model:
retries through injected failures, usage and cost accounting, resuming a crashed stage without asking again, and
the API key kept out of everything the run writes."""

from __future__ import annotations

import re

import pytest

from rft_helpers.recipes import load_config
from rft_helpers.exceptions import ConfigError, EndpointError
from rft_helpers.io import read_json, read_jsonl
from rft_helpers.run import Run
from rft_helpers.sampling import SamplingParams, get_engine
from rft_helpers.sampling.openai_server import OpenAICompatibleServer, prompt_key
from rft_helpers.stages import sample

from conftest import SMOKE

PROMPTS = [[{"role": "user", "content": f"{a}+{a}=?"}] for a in range(12)]


@pytest.fixture
def served(tiny_model_dir):
    """The tiny model behind a server that fails 30% of requests with a 500 or a 429."""
    with OpenAICompatibleServer(get_engine("transformers", tiny_model_dir), "tiny", fail_rate=0.3, seed=1) as server:
        yield server


def test_every_prompt_answered_once_through_injected_failures(served, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-secret")
    engine = get_engine("openai", "unused", base_url=served.base_url, model="tiny", api_key_env="TEST_OPENAI_KEY",
                        max_concurrency=4, max_retries=10)
    outputs = engine.generate(PROMPTS, SamplingParams(n=3, temperature=0.8, max_new_tokens=6, seed=2))
    assert [len(o) for o in outputs] == [3] * len(PROMPTS)  # nothing lost
    assert served.stats["failed"] > 0  # the failures happened, and were retried
    assert sorted(served.served.values()) == [1] * len(PROMPTS)  # nothing asked twice once answered
    assert set(served.served) == {prompt_key(p) for p in PROMPTS}
    assert engine.usage["requests"] == len(PROMPTS)
    assert engine.usage["completion_tokens"] == sum(c.completion_tokens for o in outputs for c in o) > 0
    served_before = served.stats["succeeded"]
    greedy = engine.generate(PROMPTS[:2], SamplingParams(n=3, temperature=0.0, max_new_tokens=6))
    assert [len({c.text for c in o}) for o in greedy] == [1, 1]  # decoded once, repeated n times
    assert served.stats["succeeded"] - served_before == 2 and engine.usage["requests"] == len(PROMPTS) + 2


def test_sample_stage_resumes_after_the_server_goes_down(tiny_model_dir, tmp_path, monkeypatch):
    secret = "sk-never-written-anywhere"
    monkeypatch.setenv("TEST_OPENAI_KEY", secret)
    config = load_config(SMOKE, ["sample.engine=openai", "sample.chunk_questions=4", "sample.num_questions=12",
                                 "openai.model=tiny", "openai.api_key_env=TEST_OPENAI_KEY", "openai.max_retries=1",
                                 "openai.prompt_price_per_million=1.0", "openai.completion_price_per_million=2.0"])
    run = Run.create(config, tmp_path / "run")
    stage_config = run.config.stage_config("sample", 1)  # the engine's settings come with the stage's
    engine = get_engine("transformers", tiny_model_dir)
    with OpenAICompatibleServer(engine, "tiny", fail_after=6) as down:  # answers 6 questions, then fails
        stage_config.openai.base_url = down.base_url
        with pytest.raises(EndpointError, match=rf"^{down.base_url}: (the endpoint answered 500|rate limited \(429\))"):
            sample.run_stage(run, 1, stage_config, progress=False)  # a 500 or 429 after the retries
    parts = sorted((run.iter_dir(1) / "samples.parts").glob("*.jsonl"))
    assert len(parts) == 1  # the first chunk of 4 questions was written before the failure

    with OpenAICompatibleServer(engine, "tiny") as healthy:
        stage_config.openai.base_url = healthy.base_url
        rows = sample.run_stage(run, 1, stage_config, progress=False)
        assert healthy.stats["succeeded"] == 8  # only the 8 questions not written yet were asked for
    assert len(rows) == 12 * config.sample.n and len({(r["id"], r["sample_index"]) for r in rows}) == len(rows)
    assert not (run.iter_dir(1) / "samples.parts").exists()
    sampling = run.metrics(1)["sampling"]
    assert sampling["resumed_questions"] == 4 and sampling["model"] == "tiny"
    usage = sampling["usage"]  # the whole stage's: the chunk written before the failure too
    assert usage["requests"] == 12 and sampling["resumed_usage"]["requests"] == 4 and usage["cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6)
    written = [p for p in run.dir.rglob("*") if p.is_file()]
    assert not [p for p in written if secret in p.read_text(errors="ignore")]  # the key is nowhere in the run


def test_a_missing_key_or_a_key_in_the_params_is_refused(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="openai.api_key_env: the environment variable NO_SUCH_KEY_VAR is not set"):
        get_engine("openai", "m", base_url="https://api.example.com/v1", api_key_env="NO_SUCH_KEY_VAR")
    for pasted in ("sk-abc-123", "hf_SECRET123xyz", "Zx81kQ2mP0vB7nL4aW9eR3tY"):  # a key where its variable's name goes
        with pytest.raises(ConfigError) as err:
            load_config(None, [f"openai.api_key_env={pasted}"])
        assert "openai.api_key_env: this looks like a key" in str(err.value) and pasted not in str(err.value)
    assert load_config(None, ["openai.api_key_env=HF_TOKEN"]).openai.api_key_env == "HF_TOKEN"


def test_validate_needs_the_key_variable_for_a_remote_url_before_anything_runs(monkeypatch):
    from rft_helpers import preflight

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    remote = load_config(None, ["sample.engine=openai", "openai.base_url=https://api.example.com/v1",
                                "openai.api_key_env=NO_SUCH_KEY_VAR"])
    with pytest.raises(ConfigError, match=r"NO_SUCH_KEY_VAR is not set .*export NO_SUCH_KEY_VAR=<your key>"):
        preflight.check(remote)
    monkeypatch.setenv("NO_SUCH_KEY_VAR", "secret-value")
    preflight.check(remote)
    preflight.check(load_config(None, ["sample.engine=openai", "openai.api_key_env=NO_SUCH_KEY_VAR"]))  # localhost


def test_a_closed_port_is_one_line_naming_the_url():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    engine = get_engine("openai", "m", base_url=url, max_retries=0, timeout_s=5)
    with pytest.raises(EndpointError) as err:
        engine.generate([[{"role": "user", "content": "1+1=?"}]], SamplingParams(n=1, max_new_tokens=4))
    message = str(err.value)
    assert message.startswith(f"{url}: cannot connect (1 tries)") and "run the same command again" in message
    assert "\n" not in message


class Scripted:
    """An engine whose answers are fixed: a reasoning model's, with its thinking in <think> tags."""

    name, model_name = "scripted", "scripted"

    def __init__(self, text: str):
        self.text = text

    def generate(self, prompts, params, progress=False):
        from rft_helpers.sampling.base import Completion

        return [[Completion(self.text, 3, 5, "stop")] * params.n for _ in prompts]


@pytest.mark.parametrize("parser", [True, False], ids=["reasoning_content", "inline"])
def test_a_reasoning_models_thinking_is_kept_dropped_or_wrapped(parser):
    text = "<think>\n7 plus 5 is 12.\n</think>\n\nAnswer: 12"
    with OpenAICompatibleServer(Scripted(text), "r1", reasoning_parser=parser) as server:
        def answer(mode):
            engine = get_engine("openai", "r1", base_url=server.base_url, model="r1", reasoning=mode)
            return engine.generate(PROMPTS[:1], SamplingParams(n=1, max_new_tokens=8))[0][0].text

        assert answer("keep") == "<think>\n7 plus 5 is 12.\n</think>\n\nAnswer: 12"
        assert answer("drop") == "Answer: 12"
        assert answer("wrap") == "<think>\n7 plus 5 is 12.\n</think>\n<answer>\nAnswer: 12\n</answer>"
    with OpenAICompatibleServer(Scripted("Answer: 12"), "plain") as server:  # a model that does not think
        engine = get_engine("openai", "plain", base_url=server.base_url, model="plain", reasoning="keep")
        assert engine.generate(PROMPTS[:1], SamplingParams(n=1, max_new_tokens=8))[0][0].text == "Answer: 12"


def test_retry_after_is_honoured_on_429(tiny_model_dir):
    with OpenAICompatibleServer(Scripted("Answer: 1"), "m", fail_after=0, fail_status=429,
                                retry_after_s=1.5) as server:
        engine = get_engine("openai", "m", base_url=server.base_url, model="m", max_retries=2)
        with pytest.raises(EndpointError) as err:
            engine.generate(PROMPTS[:1], SamplingParams(n=1, max_new_tokens=4))
        arrivals = server.arrivals
    assert len(arrivals) == 3  # the request and its 2 retries, each after the wait the server asked for
    assert all(later - earlier >= 1.5 for earlier, later in zip(arrivals, arrivals[1:]))
    assert str(err.value) == (f"{server.base_url}: rate limited (429) after 3 tries, asking to wait 1.5 s "
                              "(Retry-After; waits up to 120 s are honoured); lower openai.max_concurrency or try "
                              "later; the chunks already written are kept: run the same command again to resume")


def test_the_spending_cap_stops_before_a_chunk_and_a_raised_cap_continues(tiny_model_dir, tmp_path):
    from rft_helpers.exceptions import BudgetReached, ConfigError

    prices = ["openai.prompt_price_per_million=1000", "openai.completion_price_per_million=2000"]
    config = load_config(SMOKE, ["sample.engine=openai", "sample.chunk_questions=4", "sample.num_questions=12",
                                 "openai.model=tiny", "openai.max_cost_usd=0.000001", *prices])
    run = Run.create(config, tmp_path / "run")
    stage_config = run.config.stage_config("sample", 1)
    with OpenAICompatibleServer(get_engine("transformers", tiny_model_dir), "tiny") as server:
        stage_config.openai.base_url = server.base_url
        with pytest.raises(BudgetReached) as err:  # the first chunk always runs: nothing to estimate from before
            sample.run_stage(run, 1, stage_config, progress=False)
        assert server.stats["succeeded"] == 4
        assert re.match(r"openai.max_cost_usd=1e-06: \$\d+\.\d{4} spent on 1 of 3 chunks and the next would take about "
                        r"\$\d+\.\d{4} .*raise openai.max_cost_usd and run the same command again", str(err.value))
        parts = run.iter_dir(1) / "samples.parts"
        spent = read_json(parts / "00000.usage.json")["cost_usd"]
        assert spent == pytest.approx((read_json(parts / "00000.usage.json")["prompt_tokens"] * 1000
                                       + read_json(parts / "00000.usage.json")["completion_tokens"] * 2000) / 1e6)

        # A cap for two chunks in all: one more, then the stop; then no cap: the rest. Raising it is allowed.
        stage_config.openai.max_cost_usd = spent * 2.5
        with pytest.raises(BudgetReached, match="spent on 2 of 3 chunks"):
            sample.run_stage(run, 1, stage_config, progress=False)
        assert server.stats["succeeded"] == 8
        Run.create(config.model_copy(update={"openai": config.openai.model_copy(update={"max_cost_usd": 100.0})}),
                   tmp_path / "run")
        stage_config.openai.max_cost_usd = 100.0
        rows = sample.run_stage(run, 1, stage_config, progress=False)
        assert server.stats["succeeded"] == 12 and len(rows) == 12 * config.sample.n
    usage = run.metrics(1)["sampling"]["usage"]  # the whole stage's, over its three runs
    assert usage["requests"] == 12 and usage["cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 1000 + usage["completion_tokens"] * 2000) / 1e6)
    assert run.metrics(1)["sampling"]["resumed_usage"]["requests"] == 8
    with pytest.raises(ConfigError, match="max_cost_usd needs the prices"):
        load_config(SMOKE, ["openai.max_cost_usd=5"])
