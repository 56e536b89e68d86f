from pathlib import Path

import pytest

from rft_helpers.cli import main
from rft_helpers.config import RunConfig
from rft_helpers.recipes import load_config
from rft_helpers.exceptions import ConfigError
from rft_helpers.preflight import check_paths

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("recipe", sorted((ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    """Recipes cannot drift from the config: each one validates."""
    config = load_config(recipe)
    assert isinstance(config, RunConfig)


def test_precedence_defaults_then_yaml_then_overrides(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("sample:\n  temperature: 0.5\n  n: 3\n")
    config = load_config(params, ["sample.temperature=1.2", "train.max_steps=7"])
    assert config.sample.temperature == 1.2  # override beats YAML
    assert config.sample.n == 3  # YAML beats default
    assert config.sample.top_p == 1.0  # default
    assert config.train.max_steps == 7


@pytest.mark.parametrize(
    "yaml_text, overrides, expected",
    [
        ("sample:\n  temprature: 0.5\n", [], "sample.temprature: unknown key"),
        ("sample:\n  n: many\n", [], "sample.n: Input should be a valid integer"),
        ("run_name: t\n", ["sample.temperature=hot"], "--set: sample.temperature: Input should be a valid number"),
        ("run_name: t\n", ["task.seed_size=5000"], "--set: task: seed_size=5000 > num_train=3000"),
        ("bogus: 1\n", [], "bogus: unknown key"),
        ("- a list\n", [], "expected a mapping"),
        # issue 18: lax or vague
        ("sample:\n  n: true\n", [], "sample.n: Input should be a valid integer (got True)"),
        ("sample:\n  n: '8'\n", [], "sample.n: Input should be a valid integer (got '8')"),
        ("train:\n  learning_rate: .inf\n", [], "train.learning_rate: Input should be a finite number"),
        ("sample:\n  n: 4\n  n: 8\n", [], "line 3, column 3: key 'n' is given twice"),
        ("sample:\n  n: [1\n", [], "not valid YAML (line 3, column 1:"),
        ("", [], "the params file is empty"),
        ("run_name: t\n", ["sample.n=[1"], "--set 'sample.n=[1': not valid YAML"),
        ("sample:\n  n: 0\n", ["sample.temperature=0.5"], "p.yaml: sample.n: Input should be greater than 0"),
    ],
)
def test_bad_parameters_name_the_field(tmp_path, yaml_text, overrides, expected):
    params = tmp_path / "p.yaml"
    params.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(params, overrides)
    message = str(err.value)
    assert expected in message and "\n" not in message


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "missing.yaml")
    config = load_config(None, ["model.name_or_path=./no-such-model"])
    with pytest.raises(ConfigError, match="model.name_or_path: no such folder"):
        check_paths(config, tmp_path)
    config = load_config(None, ["task.system_prompt_file=prompts/none.txt"])
    with pytest.raises(ConfigError, match="task.system_prompt_file: no such file"):
        check_paths(config, tmp_path)


    config = load_config(None, ["eval.second_set.path=data/gsm8k/test.jsonl"])
    with pytest.raises(ConfigError, match="eval.second_set.path: no such file: data/gsm8k/test.jsonl"):
        check_paths(config, tmp_path)
    with pytest.raises(ConfigError, match="prm.model: no such PRM folder: ./prms/mine"):
        check_paths(load_config(None, ["prm.model=./prms/mine"]), tmp_path)
    check_paths(load_config(None, ["prm.model=Qwen/Qwen2.5-Math-PRM-7B"]), tmp_path)  # a hub id
    check_paths(load_config(None, ["prm.model=trained"]), tmp_path)


def test_hub_ids_are_not_checked_as_paths(tmp_path):
    check_paths(load_config(None, ["model.name_or_path=Qwen/Qwen2.5-0.5B-Instruct"]), tmp_path)
    check_paths(load_config(None, ["eval.second_set.path=openai/gsm8k", "eval.second_set.subset=main"]), tmp_path)


def test_cli_rejects_bad_params_with_one_line_and_nonzero_exit(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("train:\n  learning_rate: fast\n")
    code = main(["run", str(params), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.count("\n") == 0 and "train.learning_rate" in err
    assert not (tmp_path / "out").exists()  # no run directory left behind


def test_paths_in_a_params_file_are_relative_to_it(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "prompt.txt").write_text("Be brief.")
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.write_text("task: {system_prompt_file: ../prompt.txt}\n"
                      "eval: {second_set: {path: ../other.jsonl}}\nmodel: {name_or_path: ./models/m}\n")
    monkeypatch.chdir(tmp_path / "recipes")
    config = load_config(recipe, ["eval.second_set.name=other"])
    assert config.task.system_prompt_file == str(tmp_path / "prompt.txt")
    assert config.eval.second_set.path == str(tmp_path / "other.jsonl")
    assert config.model.name_or_path == str(tmp_path / "recipes" / "models" / "m")
    hub = load_config(None, ["model.name_or_path=Qwen/Qwen2.5-0.5B-Instruct", "eval.second_set.path=openai/gsm8k"])
    assert hub.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and hub.eval.second_set.path == "openai/gsm8k"


# ----------------------------------------------------------------------------------------------- schedules
def test_lists_are_per_iteration_schedules(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("iterations: 4\nsample:\n  temperature: [0.5, 0.7, 0.9]\n"
                      "train:\n  learning_rate: [1.0e-4, 5.0e-5]\n")
    config = load_config(params, ["filter.max_per_question=[8, 4]"])
    assert config.schedules == {"sample.temperature": [0.5, 0.7, 0.9], "train.learning_rate": [1e-4, 5e-5],
                                "filter.max_per_question": [8, 4]}
    assert config.sample.temperature == 0.5  # the section holds the first value
    assert [config.at_iteration(i).sample.temperature for i in range(5)] == [0.5, 0.5, 0.7, 0.9, 0.9]
    assert config.at_iteration(3).train.learning_rate == 5e-5  # a shorter list holds its last value
    assert config.schedule_values(2, "filter") == {"filter.max_per_question": 4}
    assert config.sample.auto_temperatures == [0.3, 0.5, 0.7, 0.9, 1.1]  # a list-valued parameter, not a schedule
    # run.json stores the validated config: reading it back gives the same schedules
    from rft_helpers.config import config_from_dict

    assert config_from_dict(config.model_dump(mode="json")) == config


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["sample.temperature=[0.5, hot]"], "sample.temperature[1] (iteration 2): Input should be a valid number"),
        (["train.batch_size=[4, 0]"], "train.batch_size[1] (iteration 2): Input should be greater than 0"),
        (["sample.n=[]"], "sample.n: an empty list"),
        (["schedules={eval.batch_size: [1, 2]}"], "schedules: eval.batch_size: not a parameter of sample, filter, train"),
        (["sample.temperature=warm"], "sample.temperature: Input should be a valid number"),
    ],
)
def test_bad_schedules_name_the_value(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_auto_temperature_is_a_value():
    config = load_config(None, ["sample.temperature=[0.7, auto]"])
    assert config.at_iteration(2).sample.temperature == "auto"


def test_resume_with_merged_lora_is_refused():
    with pytest.raises(ConfigError, match="init resume with method lora needs lora.merge false"):
        load_config(None, ["train.init=resume", "train.method=lora"])
    assert load_config(None, ["train.init=resume", "train.method=lora", "train.lora.merge=false"]).train.lora.merge is False


# ------------------------------------------------------------------------------- rules between sections
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["train.algorithm=grpo", "sample.n=3", "train.batch_size=8"],
         "train.batch_size: 8 completions per step is not a multiple of sample.n=3"),
        (["train.algorithm=grpo", "sample.temperature=auto"],
         "sample.temperature: auto cannot be used with train.algorithm grpo"),
        (["train.algorithm=[sft, grpo]", "sample.n=[8, 6]"],  # only iteration 2 trains with GRPO
         "not a multiple of sample.n=6 (iteration 2)"),
        (["iterations=1", "train.algorithm=[sft, grpo]", "sample.n=6"],  # a longer schedule counts too
         "not a multiple of sample.n=6 (iteration 2)"),
        (["task.seed_size=0"], "train.baseline: the baseline trains on the seed set, but task.seed_size is 0"),
        (["task.seed_size=0", "train.baseline=false", "warmup.max_steps=5"],
         "warmup.max_steps: the warm-up trains on the seed set"),
        (["filter.prm=[false, true]"], "filter.prm: the run has no PRM (iteration 2); set prm.model"),
        (["train.algorithm=grpo", "train.prm_weight=0.5", "sample.n=4"], "train.prm_weight: the run has no PRM"),
        (["prm.model=trained", "train.algorithm=grpo", "sample.n=4"],
         "prm.model: trained learns from iteration 1's samples, but train.algorithm grpo samples inside its trainer"),
    ],
)
def test_rules_between_sections_are_checked_when_the_config_loads(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert load_config(None, ["train.algorithm=grpo", "sample.n=4", "train.batch_size=8"]).train.algorithm == "grpo"


@pytest.mark.parametrize("overrides, field", [
    (["train.algorithm=grpo", "sample.n=3", "train.batch_size=8"], "train.batch_size"),
    (["train.algorithm=grpo", "sample.temperature=auto"], "sample.temperature"),
])
def test_rft_validate_rejects_what_would_fail_after_the_warm_up(overrides, field, capsys):
    args = [item for o in overrides for item in ("--set", o)]
    assert main(["validate", str(ROOT / "params" / "smoke.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --set: {field}: ") and err.count("\n") == 1  # the --set values are at fault


# ------------------------------------------------------------------------------------------ stage configs
def test_a_stage_config_is_its_section_at_the_iteration_plus_the_sections_it_reads():
    from rft_helpers.config import STAGE_CONFIGS, EvalStageConfig, SampleStageConfig, TrainStageConfig

    config = load_config(ROOT / "params" / "demo.yaml", ["sample.temperature=[0.5, 0.9]", "vllm.kv_cache_gib=2",
                                                         "filter.reward=my.reward", "train.algorithm=[sft, grpo]"])
    sample = config.stage_config("sample", 2)
    assert isinstance(sample, SampleStageConfig) and sample.temperature == 0.9 and sample.n == config.sample.n
    assert sample.vllm.kv_cache_gib == 2 and sample.filter.reward == "my.reward"  # for the auto-temperature probe
    train = config.stage_config("train", 2)
    assert isinstance(train, TrainStageConfig) and train.algorithm == "grpo" and train.sample.temperature == 0.9
    warmup = config.stage_config("train", 0)  # iteration 0 is the warm-up: SFT of all weights from the base
    assert (warmup.max_steps, warmup.learning_rate, warmup.batch_size) == (200, 0.003, 32)
    assert (warmup.algorithm, warmup.method, warmup.init, warmup.mix_seed, warmup.baseline) == (
        "sft", "full", "base", False, False)
    evaluation = config.stage_config("eval", 1)
    assert isinstance(evaluation, EvalStageConfig) and evaluation.reward == "my.reward"  # the filter's by default
    filtering = config.stage_config("filter", 1)
    assert filtering.model_dump(exclude={"prm_model"}) == config.filter.model_dump() and filtering.prm_model == config.prm
    assert set(STAGE_CONFIGS) == {"sample", "prm", "filter", "train", "eval"}


def test_a_params_file_that_is_not_utf8_is_one_line(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_bytes(b"run_name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"p.yaml: not UTF-8 text \(byte 13\); save the params file as UTF-8$"):
        load_config(params)


def test_mid_stage_saves_and_init_resume_do_not_mix():
    with pytest.raises(ConfigError, match="save_every_steps cannot be used with init resume"):
        load_config(None, ["train.init=resume", "train.save_every_steps=50"])
    assert load_config(None, ["train.save_every_steps=50"]).train.save_every_steps == 50


def test_bf16_on_a_cpu_without_bf16_instructions_gets_one_line_of_advice(monkeypatch, capsys):
    from rft_helpers import preflight

    recipe = str(Path(__file__).parents[1] / "params" / "smollm2_arithmetic.yaml")
    config = load_config(recipe)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(preflight, "cpu_has_bf16", lambda: False)
    [line] = preflight.advice(config)
    assert line.startswith("model.dtype: bfloat16 and train.bf16: true on a CPU without bf16 instructions")
    assert "--set model.dtype=float32 --set train.bf16=false" in line
    assert preflight.advice(load_config(recipe, ["model.dtype=float32", "train.bf16=false"])) == []
    assert main(["validate", recipe]) == 0
    assert "note: model.dtype: bfloat16" in capsys.readouterr().err
    prm_recipe = str(Path(__file__).parents[1] / "params" / "demo_prm.yaml")  # PRM scoring in bfloat16
    [line] = preflight.advice(load_config(prm_recipe))
    assert line.startswith("prm.dtype: bfloat16 on a CPU") and line.endswith("--set prm.dtype=float32 runs faster here")
    monkeypatch.setattr(preflight, "cpu_has_bf16", lambda: True)
    assert preflight.advice(config) == [] and preflight.advice(load_config(prm_recipe)) == []
