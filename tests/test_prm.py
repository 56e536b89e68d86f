"""Process reward models: each format's scores equal a hand computation at its tags on a tiny model of that exact
shape built here (no hub), bad PRM folders are one-line errors naming them, Monte Carlo labels on a stand-in policy
whose success rates are known, and the trainer's labels sit on the separator tokens only."""

from __future__ import annotations

import pickle

import pytest
import torch

from rft_helpers.exceptions import ConfigError
from rft_helpers.models import build_char_tokenizer, save_checkpoint
from rft_helpers.prm import aggregate, detect_format, load_prm
from rft_helpers.prm.labels import monte_carlo_labels, relative_targets, step_targets
from rft_helpers.prm.reward import PRMReward
from rft_helpers.prm.training import IGNORED, tokenize, train_prm
from rft_helpers.records import StepLabels, assistant, check_rows
from rft_helpers.rewards import exact_answer
from rft_helpers.sampling import Completion, SamplingEngine, SamplingParams

PROMPT = [{"role": "user", "content": "59+63=?"}]
STEPS = [["9+3=12", "5+6+1=12", "Answer: 122"], ["9+3=12", "Answer: 12"]]


def tiny(folder, head: str = "token_classification", extra_tokens=(), labels: int = 2):
    """A 1-layer Llama of the given kind with the character tokenizer (plus `extra_tokens`), saved to `folder`."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification

    tokenizer = build_char_tokenizer()
    tokenizer.add_tokens(list(extra_tokens), special_tokens=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                         num_labels=labels)
    model = LlamaForTokenClassification(config) if head == "token_classification" else LlamaForCausalLM(config)
    save_checkpoint(model.eval(), tokenizer, folder)
    return folder, model.eval(), tokenizer


def probabilities(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def test_aggregations():
    assert [aggregate([0.9, 0.5, 0.8], how) for how in ("min", "prod", "last", "mean")] == pytest.approx(
        [0.5, 0.36, 0.8, 2.2 / 3])
    # the worst step before the answer: a low score on a right answer line does not sink the sample
    assert aggregate([0.9, 0.95, 0.2], "min_before_last") == 0.9 and aggregate([0.3], "min_before_last") == 0.3
    assert aggregate([], "min") is None
    with pytest.raises(ValueError, match="unknown 'max'"):
        aggregate([1.0], "max")


def test_token_classification_reads_the_last_token_of_each_separator(tmp_path):
    folder, model, tokenizer = tiny(tmp_path / "trl")
    prm = load_prm(folder)
    assert prm.format == detect_format(folder) == "token_classification"
    scores = prm.score([PROMPT, PROMPT], STEPS)
    for steps, got in zip(STEPS, scores):  # by hand: the whole text, the newline after each step
        prompt_text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(prompt_text + "".join(f"{s}\n" for s in steps), add_special_tokens=False)["input_ids"]
        newline = tokenizer.convert_tokens_to_ids("\n")
        positions = [i for i, t in enumerate(ids) if t == newline and i >= len(tokenizer(prompt_text)["input_ids"])]
        expected = probabilities(model, ids).softmax(-1)[positions, 1]
        assert got == pytest.approx(expected.tolist(), abs=1e-5)
    assert prm.score([PROMPT], [STEPS[1]])[0] == pytest.approx(scores[1], abs=1e-5)  # padding changes nothing
    fast = load_prm(folder, dtype="bfloat16")  # prm.dtype: the same scores, to bfloat16's precision
    assert fast.model.dtype == torch.bfloat16
    assert [s for row in fast.score([PROMPT, PROMPT], STEPS) for s in row] == pytest.approx(
        [s for row in scores for s in row], abs=0.03)


def test_identical_completions_go_through_the_model_once_and_get_the_same_scores(tmp_path):
    folder, _, _ = tiny(tmp_path / "trl")
    prm = load_prm(folder)
    rows_read = []
    prm.model.register_forward_hook(lambda module, args, kwargs, out: rows_read.append(kwargs["input_ids"].shape[0]),
                                    with_kwargs=True)
    steps = [STEPS[0], STEPS[1], STEPS[0], [], STEPS[0]]
    scores = prm.score([PROMPT] * len(steps), steps)
    assert sum(rows_read) == 2  # two distinct inputs; the empty completion is not read
    assert scores[0] == scores[2] == scores[4] == prm.score([PROMPT], [STEPS[0]])[0] and scores[3] == []
    assert scores[0] is not scores[2]  # each row its own list: a caller may change one
    other = [{"role": "user", "content": "11+11=?"}]  # the same steps under another question are another input
    rows_read.clear()
    prm.score([PROMPT, other], [STEPS[1], STEPS[1]])
    assert sum(rows_read) == 2


def test_qwen_format_reads_a_two_class_head_at_each_extra_0_tag(tmp_path):
    folder, model, tokenizer = tiny(tmp_path / "qwen", extra_tokens=["<extra_0>"])
    prm = load_prm(folder)
    assert prm.format == "qwen"
    (got,) = prm.score([PROMPT], [STEPS[0]])
    text = tokenizer.apply_chat_template(PROMPT + [{"role": "assistant", "content": "<extra_0>".join(STEPS[0]) + "<extra_0>"}],
                                         tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    tag = tokenizer.convert_tokens_to_ids("<extra_0>")
    expected = probabilities(model, ids).softmax(-1)[[i for i, t in enumerate(ids) if t == tag], 1]
    assert len(got) == 3 and got == pytest.approx(expected.tolist(), abs=1e-5)


def test_math_shepherd_compares_plus_and_minus_at_each_step_tag(tmp_path):
    folder, model, tokenizer = tiny(tmp_path / "shepherd", head="causal", extra_tokens=["ки"])
    prm = load_prm(folder)
    assert prm.format == "math_shepherd"
    (got,) = prm.score([PROMPT], [STEPS[0]])
    ids = tokenizer("59+63=? 9+3=12 ки\n5+6+1=12 ки\nAnswer: 122 ки")["input_ids"]
    tag, plus, minus = (tokenizer.convert_tokens_to_ids(t) for t in ("ки", "+", "-"))
    logits = probabilities(model, ids)[[i for i, t in enumerate(ids) if t == tag]]
    assert got == pytest.approx(logits[:, [plus, minus]].softmax(-1)[:, 0].tolist(), abs=1e-5)


def test_what_is_not_a_prm_is_a_one_line_error_naming_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"^prm.model: no such PRM folder: \./no/such/prm$"):
        load_prm("./no/such/prm")
    three, _, _ = tiny(tmp_path / "three", labels=3)
    with pytest.raises(ConfigError, match=rf"^{three}: a PRM needs a head with 2 labels \(right/wrong\); this one has 3$"):
        load_prm(three)
    plain, _, _ = tiny(tmp_path / "plain", head="causal")
    with pytest.raises(ConfigError, match=rf"^{plain}: not a process reward model: no two-label"):
        load_prm(plain)
    with pytest.raises(ConfigError, match=rf"^{plain}: the tokenizer has no token 'ки'"):
        load_prm(plain, format="math_shepherd")
    notag, _, _ = tiny(tmp_path / "notag")
    with pytest.raises(ConfigError, match=rf"^{notag}: the tokenizer has no token '<extra_0>'"):
        load_prm(notag, format="qwen")


def test_a_prm_is_a_reward_with_trls_signature_and_pickles(tmp_path):
    folder, _, _ = tiny(tmp_path / "trl")
    reward = pickle.loads(pickle.dumps(PRMReward(folder, aggregation="last")))
    completions = [assistant("\n".join(steps)) for steps in STEPS]
    scores = reward(completions, prompts=[PROMPT, PROMPT])  # GRPO's keyword
    assert scores == pytest.approx([s[-1] for s in load_prm(folder).score([PROMPT, PROMPT], STEPS)], abs=1e-5)
    assert reward(completions, prompt=[PROMPT, PROMPT]) == pytest.approx(scores)  # the records' column
    assert reward.__name__ == "prm" and pickle.dumps(reward)


class KnownPolicy(SamplingEngine):
    """Continues a prefix of k steps with exactly `successes[k]` right answers among its n continuations."""

    name, Options = "known", None

    def __init__(self, successes: dict[int, int]):
        super().__init__("known")
        self.successes, self.prompts = successes, []

    @classmethod
    def from_options(cls, model_path, options):
        raise NotImplementedError

    def _generate(self, prompts, params, progress):
        self.prompts += prompts
        out = []
        for prompt in prompts:
            right = self.successes[prompt[-1]["content"].count("\n")]
            out.append([Completion("Answer: 122" if k < right else "Answer: 121", 10, 3, "stop")
                        for k in range(params.n)])
        return out


def test_monte_carlo_labels_are_the_share_of_trajectories_through_each_step_that_reach_the_answer():
    sample = {"id": "q1", "sample_index": 0, "prompt": PROMPT, "answer": "122",
              "completion": assistant("9+3=12\n5+6+1=12\nAnswer: 122")}
    wrong = sample | {"sample_index": 1, "completion": assistant("9+3=11\nAnswer: 111")}
    other = sample | {"sample_index": 2, "completion": assistant("9+3=12\nAnswer: 121")}  # pooled, not labelled
    policy = KnownPolicy({1: 3, 2: 4})  # after one step 3 of 4 rollouts succeed, after two all 4
    rows, numbers = monte_carlo_labels(policy, [sample, wrong], exact_answer, "exact_answer",
                                       SamplingParams(n=4, temperature=1.0), "\n", pool=[sample, other])
    # "9+3=12": the sample (right), the pooled sample (wrong), its own 4 rollouts (3 right) and the 4 from the
    # next prefix, which pass through it (4 right): 8 of 10. "9+3=12 / 5+6+1=12": the sample and its 4 rollouts.
    # "9+3=11": the wrong sample and its 4 rollouts (3 right). The last step: the sample's own outcome.
    assert [r["success"] for r in rows] == [[0.8, 1.0, 1.0], [0.6, 0.0]]
    assert [r["labels"] for r in rows] == [[True, True, True], [True, False]]
    assert [p[-1] for p in policy.prompts] == [{"role": "assistant", "content": "9+3=12\n"},
                                               {"role": "assistant", "content": "9+3=12\n5+6+1=12\n"},
                                               {"role": "assistant", "content": "9+3=11\n"}]
    assert numbers["prefixes"] == 3 and numbers["rollouts"] == 12 and numbers["rollout_tokens"] == 36
    assert numbers["pooled_samples"] == 1  # the labelled sample given in the pool too is counted once
    hard, _ = monte_carlo_labels(KnownPolicy({1: 0, 2: 0}), [sample, wrong], exact_answer, "exact_answer",
                                 SamplingParams(n=4, temperature=1.0), "\n", kind="hard")
    # hard: whether any trajectory through the step succeeds (the right sample itself does, at each of its steps)
    assert [r["labels"] for r in hard] == [[True, True, True], [False, False]]
    check_rows([r | {"heldout": False} for r in rows], StepLabels, "prm_labels.jsonl")


def test_a_prefix_that_samples_share_is_rolled_out_once():
    sample = {"id": "q1", "sample_index": 0, "prompt": PROMPT, "answer": "122",
              "completion": assistant("9+3=12\n5+6+1=12\nAnswer: 122")}
    same_start = sample | {"sample_index": 1, "completion": assistant("9+3=12\n5+6+1=11\nAnswer: 112")}
    policy = KnownPolicy({1: 2, 2: 2})
    rows, numbers = monte_carlo_labels(policy, [sample, same_start], exact_answer, "exact_answer",
                                       SamplingParams(n=4, temperature=1.0), "\n")
    assert [p[-1]["content"] for p in policy.prompts] == ["9+3=12\n", "9+3=12\n5+6+1=12\n", "9+3=12\n5+6+1=11\n"]
    assert numbers["prefixes"] == 3 and numbers["prefixes_shared"] == 1
    # "9+3=12": both samples (1 right) and the 12 rollouts from the three prefixes (6 right)
    assert rows[0]["success"][0] == rows[1]["success"][0] == pytest.approx(7 / 14)


def test_relative_labels_weigh_what_each_step_changed_and_whether_the_policy_writes_it(tiny_model_dir):
    from rft_helpers.models import load_tokenizer

    sample = {"id": "q1", "sample_index": 0, "prompt": PROMPT, "answer": "122",
              "completion": assistant("9+3=12\n5+6+1=12\nAnswer: 122")}
    wrong = sample | {"sample_index": 1, "completion": assistant("9+3=11\nAnswer: 111")}
    policy = KnownPolicy({0: 2, 1: 3, 2: 3})  # from the bare prompt 2 of 4 succeed, after one or two steps 3 of 4
    rows, numbers = monte_carlo_labels(policy, [sample, wrong], exact_answer, "exact_answer",
                                       SamplingParams(n=4, temperature=1.0), "\n", kind="relative")
    assert [p[-1]["role"] for p in policy.prompts] == ["user"] + ["assistant"] * 3  # one bare prompt per question
    assert numbers["prefixes"] == 4 and numbers["rollouts"] == 16
    # the bare prompt: both samples (1 right) and all 16 rollouts (2 + 3 + 3 + 3 right)
    assert [r["prompt_success"] for r in rows] == [pytest.approx(12 / 18)] * 2
    assert rows[0]["success"] == pytest.approx([7 / 9, 4 / 5, 1.0]) and rows[1]["success"] == pytest.approx([0.6, 0.0])
    # the share of the other trajectories through the previous prefix that wrote this very step
    assert rows[0]["agreement"] == pytest.approx([8 / 17, 4 / 8, 3 / 4])
    assert rows[1]["agreement"] == pytest.approx([4 / 17, 0.0])
    targets = [step_targets(r, "relative") for r in rows]
    # step 1 raises the chance 2/3 -> 7/9 (ratio capped at 1): (1 + 8/17) / 2; step 2 likewise: (1 + 1/2) / 2;
    # "9+3=11" lowers it to 0.6: (0.9 + 4/17) / 2; the answer lines: their outcomes
    assert targets[0] == pytest.approx([25 / 34, 0.75, 1.0]) and targets[1] == pytest.approx([(0.9 + 4 / 17) / 2, 0.0])
    assert [r["labels"] for r in rows] == [[True, True, True], [True, False]]
    # a question the policy never solves: no ratio to take, the agreement alone; the last step its outcome
    assert relative_targets([0.0, 0.0], [0.25, 0.5], prompt_success=0.0) == [0.25, 0.0]
    with pytest.raises(ValueError, match="bare prompt"):
        step_targets(rows[0] | {"prompt_success": None}, "relative")
    check_rows([r | {"heldout": False} for r in rows], StepLabels, "prm_labels.jsonl")
    features = tokenize(load_tokenizer(tiny_model_dir), rows[0], "\n", labels="relative")  # what the PRM learns
    assert [label for label in features["labels"] if label != IGNORED] == pytest.approx([25 / 34, 0.75, 1.0])


def test_identical_steps_share_the_mean_of_their_targets_over_the_pool_and_the_answer_keeps_its_own(tiny_model_dir):
    from rft_helpers.models import load_tokenizer
    from rft_helpers.prm.labels import pooled_targets

    rows = [{"id": "q1", "completions": ["8+7=15", "2+3+1=6", "Answer: 65"], "success": [0.2, 0.1, 1.0]},
            {"id": "q2", "completions": ["8+7=15", "1+4+1=6", "Answer: 165"], "success": [0.6, 0.5, 0.0]},
            {"id": "q3", "completions": ["8+7=14", "6+1=7", "Answer: 74"], "success": [0.1, 0.0, 0.0]},
            {"id": "q4", "completions": ["8+7=15", "  2+3+1=6", "Answer: 6"], "success": [0.7, 0.4, 0.0]}]
    # q4 is held out: it gets the pooled targets, yet adds nothing to them
    pooled = pooled_targets(rows, "soft", pool=rows[:3])
    assert pooled[0] == pytest.approx([0.4, 0.1, 1.0]) and pooled[1] == pytest.approx([0.4, 0.5, 0.0])
    assert pooled[2] == pytest.approx([0.1, 0.0, 0.0])  # seen once: its own targets
    assert pooled[3] == pytest.approx([0.4, 0.1, 0.0])  # whitespace aside, "2+3+1=6" is q1's step
    assert pooled_targets(rows, "soft")[0][0] == pytest.approx(1.5 / 3)  # by default the rows pool themselves
    # a step that is some sample's answer line is pooled only where it is not the last step
    answer_too = [{"completions": ["x=1", "Answer: 1"], "success": [1.0, 1.0]},
                  {"completions": ["x=1"], "success": [0.0]}]
    assert pooled_targets(answer_too, "soft") == [[1.0, 1.0], [0.0]]
    # the trainer learns the targets 02_prm wrote in the row, not the row's own labels
    row = {"prompt": PROMPT, "completions": rows[0]["completions"], "success": rows[0]["success"],
           "targets": pooled[0]}
    features = tokenize(load_tokenizer(tiny_model_dir), row, "\n", labels="soft")
    assert [label for label in features["labels"] if label != IGNORED] == pytest.approx([0.4, 0.1, 1.0])


def test_the_trainer_labels_the_separator_tokens_only_and_keeps_soft_targets(tiny_model_dir):
    from rft_helpers.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    row = {"prompt": PROMPT, "completions": STEPS[0], "labels": [True, False, True], "success": [0.75, 0.25, 1.0]}
    features = tokenize(tokenizer, row, "\n", labels="soft")
    newline = tokenizer.convert_tokens_to_ids("\n")
    labelled = [i for i, label in enumerate(features["labels"]) if label != IGNORED]
    assert [features["input_ids"][i] for i in labelled] == [newline] * 3  # the last token of each separator
    assert [features["labels"][i] for i in labelled] == [0.75, 0.25, 1.0]
    assert set(features["labels"]) - {0.75, 0.25, 1.0} == {IGNORED}  # never cast: -100 is not a class
    hard = tokenize(tokenizer, row, "\n", labels="hard")
    assert [hard["labels"][i] for i in labelled] == [1.0, 0.0, 1.0]


def test_the_last_steps_weight_scales_its_share_of_the_loss(tiny_model_dir):
    from rft_helpers.models import load_tokenizer
    from rft_helpers.prm.training import collate, soft_cross_entropy

    tokenizer = load_tokenizer(tiny_model_dir)
    row = {"prompt": PROMPT, "completions": STEPS[0], "labels": [True, False, True], "success": [0.75, 0.25, 1.0]}
    features = tokenize(tokenizer, row, "\n", labels="soft", last_step_weight=0.25)
    labelled = [i for i, label in enumerate(features["labels"]) if label != IGNORED]
    assert [features["label_weights"][i] for i in labelled] == [1.0, 1.0, 0.25]
    assert sum(features["label_weights"]) == 2.25  # nothing weighs where there is no label
    batch = collate(tokenizer.pad_token_id)([features, tokenize(tokenizer, row | {"completions": STEPS[1],
                                                                                  "success": [0.5, 0.0]}, "\n")])
    torch.manual_seed(0)
    logits = torch.randn(*batch["labels"].shape, 2)
    loss = soft_cross_entropy(logits, batch["labels"], batch["label_weights"])
    by_hand = []  # (weight, target, log p(wrong), log p(right)) at each labelled token
    for row_index, (targets, weights) in enumerate(zip(batch["labels"], batch["label_weights"])):
        for position in (targets != IGNORED).nonzero().flatten().tolist():
            log_p = logits[row_index, position].log_softmax(-1)
            y = targets[position].item()
            by_hand.append(weights[position].item() * -(y * log_p[1] + (1 - y) * log_p[0]).item())
    assert len(by_hand) == 5 and loss.item() == pytest.approx(sum(by_hand) / 5, rel=1e-5)  # summed over 5 labels
    unweighted = soft_cross_entropy(logits, batch["labels"])
    assert unweighted.item() > loss.item()  # the first row's last step (target 1) weighs a quarter


def test_a_trained_prm_tells_right_steps_from_wrong_ones_and_loads_by_itself(tiny_model_dir, tmp_path):
    rows = [{"prompt": PROMPT, "completions": [good, "7+1=8", bad], "labels": [True, True, False],
             "success": [1.0, 1.0, 0.0]} for good, bad in [("9+3=12", "9+3=13"), ("2+2=4", "2+2=5"), ("5+5=10", "5+5=11")]]
    result = train_prm(tiny_model_dir, rows * 8, tmp_path / "prm", learning_rate=3e-3, num_epochs=20, batch_size=8)
    assert result.loss_history[-1] < result.loss_history[0] and result.summary["examples"] == 24
    prm = load_prm(tmp_path / "prm")
    assert prm.format == "token_classification" and (tmp_path / "prm" / "prm_config.json").exists()
    scores = prm.score([PROMPT] * 3, [r["completions"] for r in rows])
    assert all(s[0] > 0.5 > s[2] for s in scores)


def test_a_last_step_weight_of_zero_leaves_the_answer_lines_label_out_of_training(tiny_model_dir, tmp_path):
    rows = [{"prompt": PROMPT, "completions": [good, bad, "Answer: 1"], "labels": [True, False, True],
             "success": [1.0, 0.0, 1.0]} for good, bad in [("9+3=12", "9+3=13"), ("2+2=4", "2+2=5")]]
    flipped = [r | {"labels": [True, False, False], "success": [1.0, 0.0, 0.0]} for r in rows]
    scores = []
    for name, data in (("as_is", rows), ("flipped", flipped)):
        train_prm(tiny_model_dir, data * 4, tmp_path / name, last_step_weight=0.0, learning_rate=3e-3,
                  num_epochs=3, batch_size=4)
        scores.append(load_prm(tmp_path / name).score([PROMPT] * 2, [r["completions"] for r in rows]))
    # the answer line's targets differ, and nothing of them reached the weights
    assert [s for row in scores[0] for s in row] == pytest.approx([s for row in scores[1] for s in row], abs=1e-6)


def test_only_samples_drawn_as_the_rollouts_are_pooled():
    from rft_helpers.stages.prm import drawn_as

    params = SamplingParams(n=4, temperature=0.7, top_p=1.0, top_k=0, min_p=0.0)
    drawn = {"n": 8, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "engine": "transformers"}
    assert drawn_as({"sampling": drawn}, params)  # n and the engine do not change the distribution
    assert not drawn_as({"sampling": drawn | {"temperature": 1.0}}, params)
    assert not drawn_as({"sampling": drawn | {"top_k": 20}}, params)
    assert not drawn_as({"sampling": drawn | {"strategy": "beam_search"}}, params)  # a search's picks are not draws
