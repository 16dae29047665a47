import dataclasses

import pytest

from agents.sac import SACConfig
from pathwise.cli import build_parser, parse_args
from pathwise.config import Config, from_dict, leaf_fields, preset_paths, resolve
from pathwise.errors import UserError


def test_every_field_is_a_dashed_flag_with_one_line_help():
    help_text = build_parser().format_help()
    for path, *_ in leaf_fields(Config()):
        assert "--" + path[-1].replace("_", "-") in help_text
    for flag in ("--env", "--seed", "--total-steps", "--learning-starts", "--batch-size", "--buffer-size",
                 "--hidden-sizes", "--gamma", "--tau", "--updates-per-step", "--num-envs", "--eval-every",
                 "--checkpoint-every", "--device", "--run-dir", "--wandb", "--resume", "--config"):
        assert flag in help_text
    assert all(doc for *_, doc in leaf_fields(Config()))


def test_layers_defaults_preset_file_then_flags(tmp_path):
    assert preset_paths("Pendulum-v1", "sac")[0].is_file()
    user = tmp_path / "mine.yaml"
    user.write_text("batch_size: 128\nsac:\n  gamma: 0.98\n  critic_lr: 5e-4\n")
    config, _, _ = parse_args(["--env", "Pendulum-v1", "--config", str(user), "--batch-size", "64",
                            "--hidden-sizes", "64", "64", "--alpha", "0.2"])
    assert config.total_steps == 20_000  # from the preset
    assert config.agent.actor_lr == 1e-3  # from the preset
    assert config.agent.gamma == 0.98 and config.agent.critic_lr == 5e-4  # from the file ("5e-4" is a string in YAML)
    assert config.batch_size == 64  # the flag wins over the file
    assert config.agent.hidden_sizes == (64, 64) and config.agent.alpha == 0.2
    assert Config().total_steps == 1_000_000  # an env without a preset keeps the defaults


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().seed = 3


@pytest.mark.parametrize("text, message", [
    ("batch_sise: 3\n", "unknown key 'batch_sise'.*did you mean 'batch_size'"),
    ("gamma: 0.9\n", "unknown key 'gamma'.*did you mean 'sac.gamma'"),
    ("td3:\n  tau: 0.1\n", "'td3' in .* is the section of agent td3, but the agent is sac"),
    ("sac:\n  policy_delay: 2\n", "policy_delay is a hyperparameter of td3, crossq, not of sac"),
    ("agent: ppo\n", "unknown agent 'ppo'"),
    ("sac:\n  taw: 0.1\n", "unknown key 'sac.taw'.*did you mean 'sac.tau'"),
    ("batch_size: [1\n", "not valid YAML at line"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("batch_size: lots\n", "batch_size in .* must be an integer, got 'lots'"),
    ("batch_size: -4\n", "batch_size must be a positive integer, got -4"),
    ("sac:\n  hidden_sizes: [64, 0]\n", "hidden_sizes must be one or more positive widths"),
    ("wandb: sometimes\n", "wandb in .* must be one of online, offline, disabled or none"),
])
def test_bad_config_files_get_one_clear_sentence(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        resolve({}, str(path))


def test_fields_that_depend_on_each_other_are_checked_once_merged(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("buffer_size: 200\n")
    config, _, _ = parse_args(["--config", str(path), "--batch-size", "64"])
    assert (config.buffer_size, config.batch_size) == (200, 64)
    with pytest.raises(UserError, match=r"batch_size \(256\) must not exceed buffer_size \(200\)"):
        parse_args(["--config", str(path)])


def test_missing_config_file():
    with pytest.raises(UserError, match="does not exist"):
        resolve({}, "no/such/file.yaml")


@pytest.mark.parametrize("kwargs", [dict(total_steps=0), dict(buffer_size=-1), dict(batch_size=10, buffer_size=5),
                                    dict(device="gpu"), dict(num_envs=0)])
def test_invalid_values_are_refused(kwargs):
    with pytest.raises(ValueError):
        Config(**kwargs)


def test_sac_section_from_dict_accepts_yaml_types():
    config = from_dict({"sac": {"hidden_sizes": [8, 8], "alpha": None, "tau": 1}}, "test")
    assert config.agent == SACConfig(hidden_sizes=(8, 8), tau=1.0)


def test_presets_for_the_promised_envs_are_valid():
    for env_id in ("Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"):
        assert resolve({"env": env_id}).env == env_id
