import torch
import pytest

from rft_helpers.exceptions import ConfigError
from rft_helpers.models import load_model, load_tokenizer
from rft_helpers.sampling import Completion, SamplingEngine, SamplingParams, check_counts, get_engine
from rft_helpers.sampling.hf import TransformersEngine

PROMPTS = [[{"role": "user", "content": q}] for q in ["1+1=?", "12*3-4+5=?", "9-3=?"]]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return get_engine("transformers", tiny_model_dir, batch_size=2)


def test_n_completions_per_prompt_in_prompt_order(engine):
    outputs = engine.generate(PROMPTS, SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=3))
    assert [len(o) for o in outputs] == [4, 4, 4]
    prompt_lengths = [len(engine.encode([p])[0]) for p in PROMPTS]
    for completions, length in zip(outputs, prompt_lengths):  # length-sorted batches map back to the right prompt
        assert {c.prompt_tokens for c in completions} == {length}
        for c in completions:
            assert 1 <= c.completion_tokens <= 12 and c.finish_reason in {"stop", "length"}
            assert "<|end|>" not in c.text and "<pad>" not in c.text
    assert len({c.text for c in outputs[1]}) > 1  # sampling, not copies


def test_seeded_sampling_is_reproducible_and_greedy_is_deterministic(engine):
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=7)
    assert engine.generate(PROMPTS, params) == engine.generate(PROMPTS, params)
    greedy = SamplingParams(n=2, temperature=0.0, max_new_tokens=10)
    (first, second), *_ = engine.generate(PROMPTS, greedy)
    assert first == second


def test_batched_greedy_matches_one_prompt_at_a_time(tiny_model_dir):
    """Left padding must not change what the model writes."""
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=10)
    batched = TransformersEngine(model, tokenizer, batch_size=3).generate(PROMPTS, params)
    single = TransformersEngine(model, tokenizer, batch_size=1).generate(PROMPTS, params)
    assert [o[0].text for o in batched] == [o[0].text for o in single]


def test_unknown_engine_and_count_check(tiny_model_dir):
    with pytest.raises(ConfigError, match="sample.engine: unknown engine 'nope'.*transformers"):
        get_engine("nope", None)
    with pytest.raises(RuntimeError, match="expected 2 prompts x 3 completions"):
        check_counts([1, 2], [[1, 1, 1], [1]], 3, "fake")


@pytest.mark.parametrize("engine, options, expected", [
    ("transformers", {"batch_sise": 2}, "engine transformers: unknown option 'batch_sise'; its options are batch_size, dtype"),
    ("vllm", {"tensor_paralel_size": 2}, "engine vllm: unknown option 'tensor_paralel_size'; its options are "),
    ("openai", {"max_concurency": 4}, "engine openai: unknown option 'max_concurency'; its options are "),
    ("transformers", {"dtype": "float64"}, "engine transformers: dtype: Input should be 'float32'"),
])
def test_a_misspelt_or_invalid_engine_option_is_a_one_line_error(engine, options, expected, tiny_model_dir):
    with pytest.raises(ConfigError) as err:
        get_engine(engine, tiny_model_dir, **options)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


class CountingEngine(SamplingEngine):
    """The base class's bookkeeping, on an engine that only echoes: what it was asked, and what it returned."""

    name = "counting"
    Options = None

    def __init__(self, drop_one: bool = False):
        super().__init__("echo")
        self.calls, self.drop_one = [], drop_one

    @classmethod
    def from_options(cls, model_path, options):
        return cls()

    def _generate(self, prompts, params, progress):
        self.calls.append(params.n)
        n = params.n - self.drop_one
        return [[Completion(f"{p[-1]['content']} #{k}", 3, 2, "stop") for k in range(n)] for p in prompts]


def test_the_base_engine_decodes_greedy_once_checks_counts_and_counts_tokens():
    engine = CountingEngine()
    greedy = engine.generate(PROMPTS, SamplingParams(n=4, temperature=0.0))
    assert engine.calls == [1] and [len(o) for o in greedy] == [4, 4, 4]  # decoded once, repeated n times
    assert all(len({c.text for c in o}) == 1 for o in greedy)
    engine.generate(PROMPTS, SamplingParams(n=2, temperature=1.0))
    assert engine.calls == [1, 2]
    assert engine.usage == {"requests": 6, "prompt_tokens": 6 * 3, "completion_tokens": (3 * 1 + 3 * 2) * 2}
    with pytest.raises(RuntimeError, match="engine counting: expected 3 prompts x 2 completions"):
        CountingEngine(drop_one=True).generate(PROMPTS, SamplingParams(n=2, temperature=1.0))


def test_auto_engine_is_vllm_only_on_a_gpu_with_vllm_installed(monkeypatch, tiny_model_dir):
    import importlib.util

    from rft_helpers.sampling import resolve_engine

    assert resolve_engine("openai") == "openai"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine("auto") == "transformers"
    assert get_engine("auto", tiny_model_dir).name == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    expected = "vllm" if importlib.util.find_spec("vllm") else "transformers"
    assert resolve_engine("auto") == expected
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert resolve_engine("auto") == "transformers"


def test_shared_prompt_cache_samples_like_separate_prompt_encodings(tiny_model_dir):
    """Encoding a prompt once for its n samples changes the cost, not the samples (same seed, float32)."""
    engine = TransformersEngine(load_model(tiny_model_dir), load_tokenizer(tiny_model_dir), batch_size=3)
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=11)
    shared = engine.generate(PROMPTS, params)
    engine.share_prompt_cache = False
    separate = engine.generate(PROMPTS, params)
    assert [[c.text for c in o] for o in shared] == [[c.text for c in o] for o in separate]
    assert len({c.text for o in shared for c in o}) > 3


def test_inverse_cdf_sampler_draws_from_the_softmax():
    from rft_helpers.sampling.hf import InverseCDFSampler

    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    scores = probs.log().repeat(20000, 1)  # log(0) = -inf: a token top-p removed
    chosen = InverseCDFSampler(torch.Generator().manual_seed(0))(None, scores)
    assert chosen.isfinite().sum(-1).eq(1).all()  # exactly one token left possible per row
    frequencies = torch.bincount(chosen.argmax(-1), minlength=4) / 20000
    assert frequencies[3] == 0
    assert torch.allclose(frequencies[:3], probs[:3], atol=0.015)


def test_grouped_eager_attention_equals_eager_with_padding_and_cache():
    from transformers import LlamaConfig, LlamaForCausalLM

    from rft_helpers.sampling.attention import cpu_attention

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # 2 query heads per KV head
    model = LlamaForCausalLM(config).eval()
    assert cpu_attention(model.config) == "grouped_eager"
    input_ids = torch.randint(1, 50, (3, 7))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :3] = attention_mask[2, :1] = 0  # left padding
    outputs = {}
    for attention in ("eager", "grouped_eager"):
        model.set_attn_implementation(attention)
        with torch.no_grad():
            first = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, output_attentions=True)
            step = model(input_ids=input_ids[:, :1], attention_mask=torch.cat([attention_mask, attention_mask[:, :1]], 1),
                         past_key_values=first.past_key_values)
        outputs[attention] = (first.logits, step.logits, *first.attentions)  # weights too, in eager's shapes
    for eager, grouped in zip(outputs["eager"], outputs["grouped_eager"]):
        torch.testing.assert_close(grouped, eager, rtol=1e-5, atol=1e-5)


def test_a_prompt_ending_with_an_assistant_message_is_continued(engine):
    """A rollout from a step's prefix: the model goes on with the answer begun, not a new turn."""
    begun = PROMPTS[0] + [{"role": "assistant", "content": "1+1=2\n"}]
    (ids,) = engine.encode([begun])
    assert engine.tokenizer.decode(ids) == "<|user|>1+1=?<|end|><|assistant|>1+1=2\n"
    (fresh,) = engine.encode([PROMPTS[0]])
    assert ids[: len(fresh)] == fresh
    outputs = engine.generate([begun], SamplingParams(n=2, temperature=1.0, max_new_tokens=5, seed=1))
    assert [len(o) for o in outputs] == [2]


@pytest.mark.parametrize("restriction", [{"top_k": 1}, {"min_p": 1.0}])
def test_top_k_and_min_p_narrow_the_choice_in_the_transformers_engine(tiny_model_dir, restriction):
    """At temperature 1, only the likeliest token survives top_k=1 or min_p=1: the samples are the greedy answer."""
    engine = get_engine("transformers", tiny_model_dir)
    greedy = engine.generate(PROMPTS, SamplingParams(n=1, temperature=0.0, max_new_tokens=12))
    narrowed = engine.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=12, **restriction))
    free = engine.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=12))
    assert all(c.text == g[0].text for out, g in zip(narrowed, greedy) for c in out)
    assert any(c.text != g[0].text for out, g in zip(free, greedy) for c in out)  # unrestricted, they differ


def test_top_k_and_min_p_go_to_an_openai_endpoint_only_when_set(tiny_model_dir):
    from rft_helpers.sampling.openai_engine import extra_body
    from rft_helpers.sampling.openai_server import OpenAICompatibleServer

    user = [{"role": "user", "content": "1+1=?"}]
    assert extra_body(user, SamplingParams()) == {}  # a plain OpenAI endpoint sees the standard fields only
    assert extra_body(user, SamplingParams(top_k=5, min_p=0.1)) == {"top_k": 5, "min_p": 0.1}
    local = get_engine("transformers", tiny_model_dir)
    greedy = local.generate(PROMPTS[:2], SamplingParams(n=1, temperature=0.0, max_new_tokens=12))
    with OpenAICompatibleServer(local, "tiny") as served:
        remote = get_engine("openai", "unused", base_url=served.base_url, model="tiny")
        narrowed = remote.generate(PROMPTS[:2], SamplingParams(n=2, temperature=1.0, top_k=1, max_new_tokens=12))
    assert all(c.text == g[0].text for out, g in zip(narrowed, greedy) for c in out)
