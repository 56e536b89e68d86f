"""Temperature `auto` (B-STaR): a probe at each candidate temperature, scored with the filter's reward, picks the
temperature whose samples balance exploration (distinct correct solutions) and exploitation (few duplicates)."""

from __future__ import annotations

from rft_helpers.recipes import load_config
from rft_helpers.io import read_jsonl
from rft_helpers.run import Run
from rft_helpers.sampling import Completion
from rft_helpers.stages import sample
from rft_helpers.stages.common import questions_for

from conftest import SMOKE


class TemperatureDependentEngine:
    """Stands in for a model whose exploration grows with temperature: too cold, it repeats one correct answer;
    warm, it writes different correct solutions; hot, it is wrong. Records every call."""

    name, model_name = "stub", "stub-model"

    def __init__(self, answers: dict[str, str]):
        self.answers, self.calls = answers, []

    def generate(self, prompts, params, progress=False):
        self.calls.append((len(prompts), params.n, params.temperature))
        out = []
        for prompt in prompts:
            answer = self.answers[prompt[-1]["content"]]
            if params.temperature < 0.6:
                texts = [f"Answer: {answer}"] * params.n
            elif params.temperature < 1.0:
                texts = [f"Way {k}. Answer: {answer}" for k in range(params.n)]
            else:
                texts = ["Answer: -1"] * params.n
            out.append([Completion(t, 5, 5, "stop") for t in texts])
        return out

    def close(self):
        pass


def test_the_balanced_temperature_wins_and_the_probe_is_small(tmp_path):
    config = load_config(SMOKE, ["sample.n=4", "sample.auto_questions=6", "sample.auto_temperatures=[1.1, 0.3, 0.7]",
                                 "sample.temperature=auto"])
    run = Run.create(config, tmp_path / "run")
    stage_config = run.config.stage_config("sample", 1)
    plan = sample.plan_chunks(run, 1, stage_config)
    engine = TemperatureDependentEngine({q["question"]: q["answer"] for q in questions_for(run, 1, 16)})
    chosen = sample.choose_temperature(run, 1, stage_config, plan, engine, progress=False)
    assert chosen.temperature == 0.7 and stage_config.temperature == "auto"  # a new config; the input unchanged
    probe = plan.auto_temperature
    assert probe["balance_scores"] == {"0.3": 0.0625, "0.7": 1.0, "1.1": 0.0}  # min(1/4,1)*1/4 when cold
    assert probe["probe_questions"] == 6 and engine.calls == [(6, 4, 0.3), (6, 4, 0.7), (6, 4, 1.1)]


def test_sample_stage_with_auto_temperature_records_its_choice(tmp_path):
    """The real engine on the smoke run's model: every candidate is scored, and the samples use the chosen one."""
    config = load_config(SMOKE, ["sample.temperature=auto", "sample.auto_temperatures=[0.4, 0.8]",
                                 "sample.auto_questions=4"])
    run = Run.create(config, tmp_path / "run")
    sample.run_stage(run, 1, run.config.stage_config("sample", 1), progress=False)
    sampling = run.metrics(1)["sampling"]
    assert set(sampling["auto_temperature"]["balance_scores"]) == {"0.4", "0.8"}
    assert sampling["temperature"] == sampling["auto_temperature"]["temperature"] in (0.4, 0.8)
    samples = read_jsonl(run.iter_dir(1) / "samples.jsonl")
    assert len(samples) == config.sample.num_questions * config.sample.n
    assert {s["sampling"]["temperature"] for s in samples} == {sampling["temperature"]}
