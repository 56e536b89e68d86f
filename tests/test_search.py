"""Search strategies on a scripted policy (each prefix's next steps are known) and a PRM whose step scores are fixed:
beam search keeps exactly the top N/M, DVTS subtrees never compete, weighted best-of-N pools equivalent answers,
MCTS selection and backup match a hand computation, and the compute counted is the engine's own."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from rft_helpers.rewards import exact_answer
from rft_helpers.records import assistant
from rft_helpers.sampling import Completion, SamplingEngine
from rft_helpers.search import SearchSettings, run_search
from rft_helpers.search.mcts import Node, backup, puct, select
from rft_helpers.search.base import Candidate

PROMPT = [{"role": "user", "content": "q"}]


class ScriptedPolicy(SamplingEngine):
    """`tree[prefix]` lists the next steps after `prefix`, handed out in turn to successive draws; a step ending
    in a newline stops at the separator, any other ends the answer. Run to the end, it follows each prefix's
    next step in turn."""

    name, Options = "scripted", None

    def __init__(self, tree: dict[str, list[str]]):
        super().__init__("scripted")
        self.tree, self.draws, self.requests = tree, Counter(), []

    @classmethod
    def from_options(cls, model_path, options):
        raise NotImplementedError

    def next_step(self, prefix: str) -> str:
        options = self.tree[prefix]
        step = options[self.draws[prefix] % len(options)]
        self.draws[prefix] += 1
        return step

    def _generate(self, prompts, params, progress):
        out = []
        for prompt in prompts:
            prefix = prompt[-1]["content"] if prompt[-1]["role"] == "assistant" else ""
            self.requests.append(prefix)
            completions = []
            for _ in range(params.n):
                text = self.next_step(prefix)
                while not params.stop and text.endswith("\n"):  # to the end of the answer
                    text += self.next_step(prefix + text)
                if params.stop and text.endswith("\n"):
                    completions.append(Completion(text[:-1], 5, len(text), "stop", stop_string="\n"))
                else:
                    completions.append(Completion(text, 5, len(text), "stop"))
            out.append(completions)
        return out


class FixedPRM:
    """Each step's score is fixed by its text."""

    def __init__(self, scores: dict[str, float]):
        self.scores, self.calls = scores, 0

    def score(self, prompts, steps, progress=False):
        self.calls += len(steps)
        return [[self.scores[s] for s in completion_steps] for completion_steps in steps]


def settings(**overrides) -> SearchSettings:
    return SearchSettings(**({"n": 4, "beam_width": 2, "max_steps": 5, "max_new_tokens": 100} | overrides))


def test_beam_search_keeps_exactly_the_top_n_over_m_and_expands_each_m_ways():
    tree = {"": ["a1\n", "a2\n", "a3\n", "a4\n"],
            **{f"a{i}\n": [f"Answer: {i}"] for i in range(1, 5)}}
    prm = FixedPRM({"a1": 0.9, "a2": 0.1, "a3": 0.8, "a4": 0.3, **{f"Answer: {i}": i / 10 for i in range(1, 5)}})
    policy = ScriptedPolicy(tree)
    (result,), compute = run_search("beam_search", policy, prm, [PROMPT], settings())
    # step 0: the root 4 ways; kept: the best N/M = 2 (a1, a3), each expanded M = 2 ways
    assert policy.requests == ["", "a1\n", "a3\n"]
    assert sorted(s.text for s in result.solutions) == ["a1\nAnswer: 1"] * 2 + ["a3\nAnswer: 3"] * 2
    assert result.answer.text == "a3\nAnswer: 3"  # the highest last-step score
    assert compute.tokens == policy.usage["completion_tokens"] == 4 * 3 + 4 * 9
    assert compute.prm_calls == prm.calls == 8 and compute.engine_calls == 2


def test_dvts_subtrees_never_compete():
    tree = {"": ["a1\n", "a2\n", "a3\n", "a4\n"], **{f"a{i}\n": [f"Answer: {i}"] for i in range(1, 5)}}
    prm = FixedPRM({"a1": 0.9, "a2": 0.8, "a3": 0.2, "a4": 0.3, **{f"Answer: {i}": 0.5 for i in range(1, 5)}})
    policy = ScriptedPolicy(tree)
    (result,), _ = run_search("dvts", policy, prm, [PROMPT], settings())
    # subtree 0 drew a1, a2 and keeps a1; subtree 1 drew a3, a4 and keeps a4, though a2 outscores it
    assert policy.requests == ["", "", "a1\n", "a4\n"]
    assert sorted((s.group, s.text) for s in result.solutions) == [(0, "a1\nAnswer: 1"), (0, "a1\nAnswer: 1"),
                                                                     (1, "a4\nAnswer: 4"), (1, "a4\nAnswer: 4")]
    (beam,), _ = run_search("beam_search", ScriptedPolicy(tree), prm, [PROMPT], settings())
    assert {s.text for s in beam.solutions} == {"a1\nAnswer: 1", "a2\nAnswer: 2"}  # beam search keeps a1 and a2


def test_weighted_best_of_n_pools_equivalent_answers():
    tree = {"": ["x\nAnswer: 0.5", "y\nAnswer: 1/2", "z\nAnswer: 3", "w\nAnswer: 4"]}
    prm = FixedPRM({"x": 1, "y": 1, "z": 1, "w": 1, "Answer: 0.5": 0.4, "Answer: 1/2": 0.4, "Answer: 3": 0.7,
                    "Answer: 4": 0.1})
    picks = {}
    for strategy in ("best_of_n", "weighted_best_of_n", "majority"):
        (result,), compute = run_search(strategy, ScriptedPolicy(tree), prm, [PROMPT], settings())
        picks[strategy] = result.answer.text.split("Answer: ")[1]
        assert len(result.solutions) == 4 and compute.engine_calls == 1
    assert picks["best_of_n"] == "3"  # the single best score
    assert picks["weighted_best_of_n"] in {"0.5", "1/2"}  # 0.4 + 0.4 > 0.7
    assert picks["majority"] in {"0.5", "1/2"}  # two votes against one


def test_puct_selection_and_backup_by_hand():
    root = Node(Candidate(0))
    a, b = (Node(Candidate(0, text=t), parent=root, prior=0.5) for t in ("a\n", "b\n"))
    root.children = [a, b]
    backup(a, 1.0)
    backup(a, 0.5)
    backup(b, 0.0)
    assert (root.visits, root.value_sum, a.q, b.q) == (3, 1.5, 0.75, 0.0)
    # PUCT: Q + c * P * sqrt(N_parent) / (1 + N_child), c = 2
    assert puct(root, a, 2.0) == pytest.approx(0.75 + 2 * 0.5 * math.sqrt(3) / 3)
    assert puct(root, b, 2.0) == pytest.approx(0.0 + 2 * 0.5 * math.sqrt(3) / 2)
    assert select(root, 2.0) is a
    assert select(root, 20.0) is b  # more exploration: the less visited child


def test_mcts_backs_up_rollout_outcomes_and_emits_step_values_and_pairs():
    tree = {"": ["r\n", "w\n"], "r\n": ["Answer: 1"], "w\n": ["Answer: 2"]}
    policy = ScriptedPolicy(tree)

    def outcome(questions, texts):  # one call per batch of rollouts
        calls.append(len(texts))
        return exact_answer([assistant(text) for text in texts], answer=["1"] * len(texts))

    calls = []

    (result,), compute = run_search("mcts", policy, None, [PROMPT],
                                    settings(mcts_simulations=1, mcts_width=2, mcts_value="rollout"), outcome=outcome)
    # one simulation: the root expands to r and w; each rolls out once: r reaches 1 (value 1), w reaches 2 (0)
    assert result.info["pairs"] == [{"prefix": "", "chosen": "r\n", "rejected": "w\n", "margin": 1.0}]
    assert sorted(s.text for s in result.solutions) == ["r\nAnswer: 1", "w\nAnswer: 2"]  # the rollouts
    assert compute.tokens == policy.usage["completion_tokens"]
    assert calls == [2, 1]  # both rollouts judged together; then the most visited path, completed at the end
    (again,), _ = run_search("mcts", ScriptedPolicy(tree), None, [PROMPT],
                             settings(mcts_simulations=3, mcts_width=2, mcts_value="rollout"), outcome=outcome)
    # simulation 2 selects r (Q 1): its child r/Answer: 1 is finished, value 1; simulation 3 selects it again
    assert again.answer.text == "r\nAnswer: 1"
    # r's two children (both "Answer: 1") are the finished paths: each step labelled by its node's mean value
    assert again.info["paths"] == [{"text": "r\nAnswer: 1", "steps": ["r", "Answer: 1"], "step_values": [1.0, 1.0]}] * 2


def test_a_strategy_that_needs_a_prm_says_so():
    with pytest.raises(ValueError, match="beam_search needs a PRM"):
        run_search("beam_search", ScriptedPolicy({"": ["a"]}), None, [PROMPT], settings())


def test_real_engine_and_prm_search_step_by_step_and_count_compute(tiny_model_dir, tmp_path):
    """The transformers engine stops each step at the separator (and says so) and the tiny PRM scores the
    steps: every strategy runs batched over questions, and its tokens are the engine's."""
    from rft_helpers.sampling import SamplingParams, get_engine
    from tests.test_prm import tiny

    engine = get_engine("transformers", tiny_model_dir)
    (steps,) = engine.generate([PROMPT], SamplingParams(n=8, temperature=1.0, max_new_tokens=30, stop=("\n",)))
    assert all(c.stop_string in ("\n", None) for c in steps)
    assert all("\n" not in c.text for c in steps if c.stop_string)  # the separator itself is cut off
    folder, _, _ = tiny(tmp_path / "prm")
    from rft_helpers.prm import load_prm

    prm = load_prm(folder)
    prompts = [[{"role": "user", "content": q}] for q in ("12+34=?", "56+7=?", "9+9=?")]
    for strategy in ("majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "mcts"):
        before = engine.usage["completion_tokens"]
        results, compute = run_search(strategy, engine, prm, prompts,
                                      settings(max_steps=3, max_new_tokens=24, mcts_simulations=3, mcts_width=2))
        assert len(results) == 3 and all(r.solutions for r in results), strategy
        assert compute.tokens == engine.usage["completion_tokens"] - before, strategy
        assert all(s.finished for r in results for s in r.solutions), strategy
        assert all(s.tokens < 2 * 24 for r in results for s in r.solutions), strategy  # one step past at most
        assert (compute.prm_calls > 0) == (strategy != "majority"), strategy


@pytest.mark.parametrize("overrides, message", [
    ({"eval": {"strategy": "beam_search", "n": 6}, "prm": {"model": "trained"}},
     "eval.n: 6 is not a multiple of eval.search.beam_width=4"),
    ({"sample": {"strategy": "dvts", "n": 8, "search": {"beam_width": 3}}, "prm": {"model": "trained"}},
     "sample.n: 8 is not a multiple of sample.search.beam_width=3"),
    ({"sample": {"strategy": "best_of_n"}}, "sample.strategy: best_of_n is guided by a PRM but the run has none"),
    ({"eval": {"strategy": "mcts"}}, "eval.strategy: mcts is guided by a PRM but the run has none"),
])
def test_validate_rejects_search_settings_that_cannot_run(smoke_config, overrides, message):
    from pydantic import ValidationError

    from rft_helpers.config import RunConfig

    data = smoke_config.model_dump(exclude={"schedules"})
    for section, values in overrides.items():
        data[section] = data[section] | values
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate(data)
    ok = data | {"sample": data["sample"] | {"strategy": "mcts", "search": {"mcts_value": "rollout"}}}
    RunConfig.model_validate(ok | {"eval": smoke_config.eval.model_dump()})  # rollout values need no PRM


def test_the_sample_and_evaluate_stages_search_with_a_prm_and_record_the_compute(tmp_path):
    """sample.strategy beam_search writes its solutions as samples (and the compute in metrics.json), and
    eval.strategy dvts answers the test questions with the one it chooses."""
    from rft_helpers.io import read_jsonl
    from rft_helpers.recipes import load_config
    from rft_helpers.records import Sample, check_rows
    from rft_helpers.run import Run
    from rft_helpers.stages import evaluate, sample
    from tests.conftest import SMOKE
    from tests.test_prm import tiny

    folder, _, _ = tiny(tmp_path / "prm")
    config = load_config(SMOKE, [f"prm.model={folder}", "sample.strategy=beam_search", "sample.n=4",
                                 "sample.num_questions=4", "sample.search.beam_width=2", "sample.search.max_steps=3",
                                 "eval.strategy=dvts", "eval.n=4", "eval.num_questions=4", "eval.search.beam_width=2",
                                 "eval.search.max_steps=3"])
    run = Run.create(config, tmp_path / "run")
    rows = sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)
    check_rows(rows, Sample, "samples")
    assert {r["sampling"]["strategy"] for r in rows} == {"beam_search"}
    assert sum(r["sampling"]["chosen"] for r in rows) == 4  # one answer chosen per question
    numbers = run.metrics(1)["sampling"]
    assert numbers["strategy"] == "beam_search" and numbers["search"]["prm"] == str(folder)
    assert numbers["search"]["tokens"] > 0 and numbers["search"]["engine_calls"] >= 2  # one call per step
    assert numbers["search"]["prm_calls"] > 0
    results = evaluate.run_stage(run, 1, run.config.stage_config("eval", 1), progress=False)
    assert results["eval"]["strategy"] == "dvts" and results["eval"]["n"] == 4
    assert results["eval"]["search"]["tokens"] > 0 and results["eval"]["n"] == 4
    assert len(read_jsonl(run.iter_dir(1) / "predictions.jsonl")) == 4


def test_with_a_prm_still_to_train_the_stages_fall_back_and_say_so(tmp_path):
    from rft_helpers.recipes import load_config
    from rft_helpers.run import Run
    from rft_helpers.stages import sample
    from tests.conftest import SMOKE

    config = load_config(SMOKE, ["prm.model=trained", "sample.strategy=best_of_n", "sample.num_questions=2"])
    run = Run.create(config, tmp_path / "run")
    sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)
    numbers = run.metrics(1)["sampling"]
    assert numbers["strategy"] == "sample" and "needs a PRM" in numbers["strategy_note"]


def test_mcts_samples_feed_the_prm_stage_and_dpo_step_pairs(tmp_path):
    """sample.strategy mcts with rollout values: its tree's step values become the PRM's labels (no separate
    rollouts) and its step preferences join the DPO pairs."""
    from rft_helpers.io import read_jsonl, write_jsonl
    from rft_helpers.recipes import load_config
    from rft_helpers.records import Pair, StepLabels, check_rows
    from rft_helpers.run import Run
    from rft_helpers.stages import filter as filter_stage
    from rft_helpers.stages import prm as prm_stage
    from rft_helpers.stages import sample
    from tests.conftest import SMOKE

    config = load_config(SMOKE, ["sample.strategy=mcts", "sample.num_questions=8", "sample.search.mcts_value=rollout",
                                 "sample.search.mcts_simulations=3", "sample.search.mcts_width=3",
                                 "prm.model=trained", "prm.labels_from=search", "prm.num_epochs=1",
                                 "filter.step_pairs=true"])
    run = Run.create(config, tmp_path / "run")
    sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)
    trees = read_jsonl(run.iter_dir(1) / "search_trees.jsonl")
    assert len(trees) == 8 and all(len(p["steps"]) == len(p["step_values"]) for t in trees for p in t["paths"])
    assert run.metrics(1)["sampling"]["strategy"] == "mcts"
    prm_stage.run_stage(run, 1, run.config.stage_config("prm", 1), progress=False)
    labels = check_rows(read_jsonl(run.iter_dir(1) / "prm_labels.jsonl"), StepLabels, "prm_labels")
    assert run.metrics(1)["prm"]["rollouts"]["source"] == "search" and run.metrics(1)["prm"]["rollouts"]["rollouts"] == 0
    assert sum(len(t["paths"]) for t in trees) >= len(labels) > 0
    # an untrained policy rarely reaches an answer, so its tree may hold no pair: add one as MCTS writes them
    trees[0]["pairs"].append({"prefix": "1+1=2\n", "chosen": "Answer: 2", "rejected": "Answer: 3", "margin": 1.0})
    write_jsonl(run.iter_dir(1) / "search_trees.jsonl", trees)
    filter_stage.run_stage(run, 1, run.config.stage_config("filter", 1), progress=False)
    pairs = check_rows(read_jsonl(run.iter_dir(1) / "pairs.jsonl"), Pair, "pairs")
    step_pairs = sum(len(t["pairs"]) for t in trees)
    assert run.metrics(1)["filter"]["step_pairs"] == step_pairs and len(pairs) >= step_pairs
    assert {"id": trees[0]["id"], "chosen": [{"role": "assistant", "content": "1+1=2\nAnswer: 2"}],
            "rejected": [{"role": "assistant", "content": "1+1=2\nAnswer: 3"}]}.items() <= next(
        p for p in pairs if p["chosen"][0]["content"] == "1+1=2\nAnswer: 2").items()


def test_validate_rejects_relative_labels_from_search_trees(smoke_config):
    from pydantic import ValidationError

    from rft_helpers.config import RunConfig

    data = smoke_config.model_dump(exclude={"schedules"})
    data["sample"] |= {"strategy": "mcts", "search": {"mcts_value": "rollout"}}
    data["prm"] |= {"model": "trained", "labels_from": "search", "labels": "relative"}
    with pytest.raises(ValidationError, match="prm.labels: relative needs rollouts from each step's prefix"):
        RunConfig.model_validate(data)
    data["prm"]["labels"] = "soft"
    RunConfig.model_validate(data)
