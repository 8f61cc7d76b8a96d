from pathlib import Path

import pytest

from ttc_runtime.config import ConfigError, load_config
from ttc_runtime.experiment import ExperimentConfig, load_experiment
from ttc_runtime.trainers.common import TrainSettings


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(ExperimentConfig, write(tmp_path, "")) == ExperimentConfig()


def test_values_override_defaults(tmp_path):
    config = load_config(
        ExperimentConfig, write(tmp_path, "sampling:\n  temperature: 0.5\nproposer:\n  training:\n    max_steps: 7\n")
    )
    assert config.sampling.temperature == 0.5
    assert config.proposer.training.max_steps == 7
    assert config.proposer.training.batch_size == ExperimentConfig().proposer.training.batch_size


def test_yaml_list_fills_a_tuple(tmp_path):
    text = "task:\n  name: synthetic\n  synthetic:\n    levels:\n" + "".join(
        f"      - {{num_ops: [1, {n}], max_start: 9, max_operand: 9}}\n" for n in range(1, 6)
    )
    config = load_config(ExperimentConfig, write(tmp_path, text))
    assert config.task.synthetic.levels[4].num_ops == (1, 5)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "proposer:\n  training:\n    max_stepz: 5\n")
    with pytest.raises(ConfigError, match=rf"{path}: proposer.training.max_stepz: unknown key"):
        load_config(ExperimentConfig, path)


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path, "sampling:\n  max_new_tokens: lots\n")
    with pytest.raises(ConfigError, match=rf"{path}: sampling.max_new_tokens: Input should be a valid integer"):
        load_config(ExperimentConfig, path)


def test_string_number_is_not_coerced(tmp_path):
    with pytest.raises(ConfigError, match="proposer_eval.problems_per_level"):
        load_config(ExperimentConfig, write(tmp_path, "proposer_eval:\n  problems_per_level: '200'\n"))


def test_bad_choice_and_cross_field_rules(tmp_path):
    with pytest.raises(ConfigError, match="task.name"):
        load_config(ExperimentConfig, write(tmp_path, "task:\n  name: gsm8k\n"))
    with pytest.raises(ConfigError, match="either model .* or base_model"):
        load_config(ExperimentConfig, write(tmp_path, "proposer:\n  model: a\n  base_model: b\n"))
    with pytest.raises(ConfigError, match="'{question}' exactly once"):
        load_config(ExperimentConfig, write(tmp_path, "proposer:\n  prompt:\n    template: 'no slot'\n"))
    with pytest.raises(ConfigError, match="train_pool.split: 'test' is the evaluation pool's split too"):
        load_config(ExperimentConfig, write(tmp_path, "train_pool:\n  problems_per_level: 5\n  split: test\n"))


def test_a_config_without_run_dir_runs_in_a_directory_named_after_its_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("proposer:\n  training:\n    max_steps: 7\n")
    assert load_experiment(path).run_dir == str(Path("runs") / "small")
    path.write_text(f"run_dir: {tmp_path / 'mine'}\n")
    assert load_experiment(path).run_dir == str(tmp_path / "mine")
    assert ExperimentConfig().run_dir == "runs/default"
    assert load_experiment("configs/embedded.yaml").run_dir == "runs/embedded"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(ExperimentConfig, tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(ExperimentConfig, write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(ExperimentConfig, write(tmp_path, "- 1\n- 2\n"))


def test_a_key_given_twice_is_an_error_naming_the_key_and_its_lines(tmp_path):
    path = write(tmp_path, "run_dir: a\nsampling:\n  temperature: 0.5\n  top_p: 0.9\n  temperature: 0.9\n")
    with pytest.raises(ConfigError) as error:
        load_config(ExperimentConfig, path)
    assert str(error.value) == f"{path}: line 5: duplicate key 'temperature' (first given on line 3)"
    path = write(tmp_path, "run_dir: a\nproposer: {}\nrun_dir: b\n")
    with pytest.raises(ConfigError, match="line 3: duplicate key 'run_dir' \\(first given on line 1\\)"):
        load_config(ExperimentConfig, path)
    # a key merged in with << may be overridden: that is what merging is for
    path = write(
        tmp_path,
        "proposer:\n  training: &short {max_steps: 5, batch_size: 2}\nprm:\n  training:\n"
        "    <<: *short\n    max_steps: 7\n",
    )
    training = load_config(ExperimentConfig, path).prm.training
    assert (training.max_steps, training.batch_size) == (7, 2)


def test_a_misspelt_device_is_a_config_error_but_a_missing_gpu_is_not(tmp_path):
    with pytest.raises(ConfigError, match="device: Value error, device 'gpu' is not a torch device"):
        load_config(ExperimentConfig, write(tmp_path, "device: gpu\n"))
    assert load_config(ExperimentConfig, write(tmp_path, "device: cuda:1\n")).device == "cuda:1"


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        load_config(ExperimentConfig, path)


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = load_experiment(path)
    assert config.run_dir.startswith("runs/")


@pytest.mark.parametrize(
    "name, sections",
    [
        ("embedded", ("proposer", "revision")),
        ("quick", ("proposer",)),
        ("embedded-full", ("proposer", "revision")),
        ("example-real", ("revision",)),
    ],
)
def test_the_shipped_configs_checkpoint_long_training_without_changing_a_stage_key(name, sections):
    """A run killed while training resumes from its last checkpoint; the interval is left out of
    the stage keys, so a run trained before it was set stays up to date."""
    from ttc_runtime.stages.base import fingerprint

    config = load_experiment(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    for section in sections:
        settings = getattr(config, section)
        assert settings.training.save_steps is not None and settings.training.save_steps <= 100, section
        plain = settings.model_copy(update={"training": settings.training.model_copy(update={"save_steps": None})})
        assert fingerprint(settings) == fingerprint(plain), section
    if name == "embedded-full":  # only the interval was written: the proposer trains with the defaults
        defaults = ExperimentConfig().proposer
        assert config.proposer.training.model_copy(update={"save_steps": None}) == defaults.training


def test_generation_engine_is_chosen_in_the_config(tmp_path):
    from ttc_runtime.solver import SolverConfig
    from ttc_runtime.stages import RunContext
    from ttc_runtime.stages.base import RUN_MARKER

    with pytest.raises(ConfigError, match="generation.backend"):
        load_config(ExperimentConfig, write(tmp_path, "generation:\n  backend: tgi\n"))
    with pytest.raises(ConfigError, match="generation.gpu_memory_utilization"):
        load_config(ExperimentConfig, write(tmp_path, "generation:\n  gpu_memory_utilization: 1.5\n"))
    default = RunContext(ExperimentConfig(run_dir=str(tmp_path / "a")))
    run_dir = tmp_path / "b"
    (run_dir / "proposer").mkdir(parents=True)
    (run_dir / "proposer" / "config.json").write_text("{}")  # what solver_config checks for
    (run_dir / RUN_MARKER).touch()  # a run's directory, in which the stage keys cache content hashes
    text = f"run_dir: {run_dir}\ngeneration:\n  backend: vllm\n"
    vllm = RunContext(load_config(ExperimentConfig, write(tmp_path, text)))
    # The default engine keeps the stage keys runs already have; vLLM's samples are its own.
    assert default.sampling_key() == default.config.sampling
    assert vllm.sampling_key() != default.sampling_key() and "vllm" in vllm.sampling_key()
    assert default.verifier_key("test") != vllm.verifier_key("test")
    assert SolverConfig.from_run(vllm.config, policy=None).generation.backend == "vllm"


@pytest.mark.parametrize("kind", ["causal_lm", "chat_turn", "step_separator"])
def test_a_published_prm_is_given_not_trained(tmp_path, kind):
    with pytest.raises(ConfigError, match=f"verifier.kind '{kind}' needs prm.model: only token-classification"):
        load_config(ExperimentConfig, write(tmp_path, f"verifier:\n  kind: {kind}\n"))
    config = load_config(ExperimentConfig, write(tmp_path, f"prm:\n  model: models/prm\nverifier:\n  kind: {kind}\n"))
    assert config.verifier.published


def test_chat_layouts_are_configured_by_their_own_sections(tmp_path):
    text = (
        "prm:\n  model: models/prm\nverifier:\n  kind: chat_turn\n"
        "  chat_turn:\n    verdict: '+'\n    first_turn: \"{question}\\n\\n{step}\"\n    good_token_id: 10\n"
        "  step_separator:\n    separator: <extra_0>\n    system_prompt: null\n    good_class: 1\n"
        "    trust_remote_code: true\n"
    )
    verifier = load_config(ExperimentConfig, write(tmp_path, text)).verifier
    assert verifier.chat_turn.first_turn == "{question}\n\n{step}" and verifier.chat_turn.good_token_id == 10
    assert verifier.step_separator.system_prompt is None and verifier.step_separator.trust_remote_code
    with pytest.raises(ConfigError, match="verifier.chat_turn.first_turn: .*'{step}' exactly once"):
        load_config(ExperimentConfig, write(tmp_path, "verifier:\n  chat_turn:\n    first_turn: '{question}'\n"))
    with pytest.raises(ConfigError, match="verifier.step_separator.good_class"):
        load_config(ExperimentConfig, write(tmp_path, "verifier:\n  step_separator:\n    good_class: 2\n"))


def test_a_negative_price_or_penalty_is_refused_by_key(tmp_path):
    for key, name in (
        ("reinforce_lambdas", "reinforce_lambdas"),
        ("training:\n    outcome_penalties", "training.outcome_penalties"),
    ):
        path = write(tmp_path, f"allocator:\n  {key}: [0.1, -1]\n")
        with pytest.raises(ConfigError, match=rf"allocator\.{name}\.1"):
            load_config(ExperimentConfig, path)


def test_a_matched_budget_outside_the_pool_is_refused_by_key(tmp_path):
    path = write(tmp_path, "pool:\n  budgets: [1, 4]\nallocator:\n  adaptive_match_budget: 16\n")
    with pytest.raises(ConfigError, match=r"allocator\.adaptive_match_budget: 16 is not one of pool\.budgets"):
        load_config(ExperimentConfig, path)
    path = write(tmp_path, "pool:\n  budgets: [1, 4]\nallocator:\n  adaptive_match_budget: 4\n")
    assert load_config(ExperimentConfig, path).allocator.adaptive_match_budget == 4


def test_a_mapping_changes_only_the_keys_it_names_and_keeps_the_fields_own_defaults(tmp_path):
    # The revision model's training defaults to 300 steps at 1e-3 on 512 tokens and the PRM's to
    # 400 at 1e-3, not TrainSettings' 1,100 at 3e-3 on 256: naming one key keeps the rest.
    config = load_config(
        ExperimentConfig, write(tmp_path, "revision:\n  training: {save_steps: 25}\nprm:\n  training: {max_steps: 7}\n")
    )
    revision = config.revision.training
    assert (revision.max_steps, revision.learning_rate, revision.max_length, revision.save_steps) == (
        300,
        1e-3,
        512,
        25,
    )
    assert (config.prm.training.max_steps, config.prm.training.learning_rate) == (7, 1e-3)
    named = load_config(ExperimentConfig, write(tmp_path, "revision:\n  training: {learning_rate: 3.0e-3}\n"))
    assert (named.revision.training.learning_rate, named.revision.training.max_steps) == (3e-3, 300)
    # The proposer's training has the type's defaults, so a mapping there starts from them.
    proposer = load_config(ExperimentConfig, write(tmp_path, "proposer:\n  training: {max_steps: 9}\n")).proposer
    assert proposer.training == TrainSettings(max_steps=9)
