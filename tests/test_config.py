import dataclasses
import importlib.util
from pathlib import Path

import pytest

from pathwise.agents.sac import SACConfig
from pathwise.cli import build_parser, parse_args
from pathwise.config import Config, from_dict, leaf_fields, preset_paths, resolve
from pathwise.errors import UserError
from pathwise.run import expected_updates


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
    ("agent: [td3]\n", "unknown agent \\['td3'\\]"),
    ("td3:\n  policy_delay: 3\n", "set agent: td3 \\(or --agent td3\\) to train td3"),
    ("env_kwargs:\n  render_mode: human\n", "env_kwargs may not set render_mode"),
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


def test_every_mujoco_v5_task_has_a_valid_preset_that_says_where_its_numbers_come_from():
    import gymnasium as gym

    mujoco = sorted(k for k, spec in gym.registry.items() if k.endswith("-v5") and "mujoco" in str(spec.entry_point))
    assert len(mujoco) == 11
    for env_id in ["Pendulum-v1", *mujoco]:
        paths = preset_paths(env_id, "sac")
        assert paths and all("rl-baselines3-zoo" in p.read_text().splitlines()[0] for p in paths), env_id
        assert resolve({"env": env_id}).env == env_id
    assert resolve({"env": "Swimmer-v5"}).agent.gamma == 0.9999 and resolve({"env": "Humanoid-v5"}).total_steps == 2e6


def test_an_env_preset_may_name_its_agent_and_a_flag_or_config_file_still_wins(tmp_path):
    assert resolve({"env": "FetchPush-v4"}).agent == resolve({"env": "FetchPush-v4", "agent": "tqc"}).agent
    assert type(resolve({"env": "FetchPush-v4"}).agent).__name__ == "TQCConfig"
    assert type(resolve({"env": "FetchPush-v4", "agent": "sac"}).agent).__name__ == "SACConfig"
    path = tmp_path / "sac.yaml"
    path.write_text("agent: sac\n")
    assert type(resolve({"env": "FetchPush-v4"}, str(path)).agent).__name__ == "SACConfig"
    assert type(resolve({"env": "FetchReach-v4"}).agent).__name__ == "SACConfig"  # its preset names none


def test_a_family_preset_lies_under_the_env_own_and_may_name_the_agent(tmp_path, monkeypatch):
    import pathwise.config as config_module

    (tmp_path / "fam").mkdir()
    (tmp_path / "fam.yaml").write_text("agent: tqc\naction_repeat: 3\ntotal_steps: 5000\n")
    (tmp_path / "fam" / "own-v0.yaml").write_text("action_repeat: 4\n")
    (tmp_path / "fam" / "sac-v0.yaml").write_text("agent: sac\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    config = resolve({"env": "fam/own-v0"})
    assert type(config.agent).__name__ == "TQCConfig"
    assert (config.action_repeat, config.total_steps) == (4, 5000)  # the env's own preset over its family's
    assert type(resolve({"env": "fam/sac-v0"}).agent).__name__ == "SACConfig"  # the env's own agent wins
    assert type(resolve({"env": "fam/own-v0", "agent": "crossq"}).agent).__name__ == "CrossQConfig"
    assert resolve({"env": "other/own-v0"}).action_repeat == 1


def test_env_kwargs_from_flags_and_yaml_and_their_mistakes(tmp_path):
    config, _, _ = parse_args(["--env", "HalfCheetah-v5", "--env-kwargs", "ctrl_cost_weight=0.05",
                               "reset_noise_scale=0"])
    assert config.env_kwargs == {"ctrl_cost_weight": 0.05, "reset_noise_scale": 0}
    path = tmp_path / "kwargs.yaml"
    path.write_text("env: Pendulum-v1\nenv_kwargs:\n  g: 9.0\n")
    assert resolve({}, str(path)).env_kwargs == {"g": 9.0}
    for words, message in [(["g"], "takes name=value words"), (["=3"], "takes name=value words"),
                           (["g=[1"], "the value of g is not readable")]:
        with pytest.raises(UserError, match=message):
            parse_args(["--env-kwargs", *words])
    path.write_text("env_kwargs: [1, 2]\n")
    with pytest.raises(UserError, match="takes name=value words"):
        resolve({}, str(path))


def test_env_kwargs_reach_every_env_of_the_run_and_travel_with_it(tiny, tmp_path):
    from pathwise import load_policy
    from pathwise.run import build_trainer, resume_trainer

    trainer = build_trainer(tiny(env_kwargs={"g": 3.5}, num_envs=2))
    trainer.run()
    trainer.close()
    assert [env.unwrapped.g for env in trainer.collector.envs.envs] == [3.5, 3.5]
    assert trainer.evaluator.env.unwrapped.g == 3.5
    assert "g: 3.5" in (tmp_path / "run" / "config.yaml").read_text()
    assert load_policy(tmp_path / "run").env_kwargs == {"g": 3.5}
    resumed = resume_trainer(tmp_path / "run", {"total_steps": 400})
    assert resumed.evaluator.env.unwrapped.g == 3.5 and resumed.config.env_kwargs == {"g": 3.5}
    resumed.close()
    with pytest.raises(UserError, match="does not take env_kwargs {'gravity': 3}: .*unexpected keyword"):
        build_trainer(tiny(env_kwargs={"gravity": 3}, run_dir=str(tmp_path / "other")))
    with pytest.raises(UserError, match=r"fails with env_kwargs {'g': 'abc'}: TypeError"):
        build_trainer(tiny(env_kwargs={"g": "abc"}, run_dir=str(tmp_path / "other")))


def test_named_preset_is_a_config_by_name_and_layers_over_the_env_presets():
    config, _, _ = parse_args(["--env", "Hopper-v5", "--config", "sample-efficient"])
    assert config.agent.name == "crossq" and config.updates_per_step == 2
    assert config.agent.critic_hidden_sizes == (512, 512)
    assert config.precision == "auto" and config.compile is None  # the run's own choice, on the machine it runs
    assert config.learning_starts == 5000  # configs/crossq/Hopper-v5.yaml, under the named preset
    config, _, _ = parse_args(["--env", "Hopper-v5", "--config", "sample-efficient", "--updates-per-step", "1"])
    assert config.updates_per_step == 1  # flags still win


def benchmark_variants() -> dict[str, list[str]]:
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "mujoco.py"
    spec = importlib.util.spec_from_file_location("benchmark_mujoco", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.VARIANTS


@pytest.mark.parametrize("env", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_named_preset_is_the_run_its_benchmark_measured(env):
    """README's and docs/benchmarks.md's returns of the preset come from benchmarks/mujoco.py's 100k runs of
    se-catlinf-hl-wn-grise20-pa (Ant's without its contact forces: the same recipe, another observation)."""
    variants = benchmark_variants()
    steps = ["--total-steps", "100000"]
    preset, _, _ = parse_args(["--env", env, "--config", "sample-efficient", *steps])
    measured, _, _ = parse_args(["--env", env, *variants["se-catlinf-hl-wn-grise20-pa"], *steps])
    assert preset == measured
    assert preset.agent.value_bins == 101 and preset.agent.weight_norm and preset.policy_average == 0.002
    assert (preset.gamma_start, preset.agent.gamma, preset.gamma_rise_steps) == (0.99, 0.995, 20_000)
    # the learning rates and the horizon follow env steps, not the run's length: a 100k run's first half is the
    # 50k run, so one run gives both budgets' returns
    half, _, _ = parse_args(["--env", env, "--config", "sample-efficient", "--total-steps", "50000"])
    assert dataclasses.replace(half, total_steps=100_000) == preset
    assert expected_updates(preset) > 50_000  # compiled where the run chooses: its updates repay the compile
    # Ant's runs: the same recipe, the env told to leave its contact forces out of the observation
    v4obs, _, _ = parse_args(["--env", env, *variants["se-v4obs-catlinf-hl-wn-grise20-pa"], *steps])
    assert dataclasses.replace(v4obs, env_kwargs={}) == preset
    assert v4obs.env_kwargs == {"include_cfrc_ext_in_observation": False}


def test_the_dm_control_tasks_preset_holds_each_action_for_two_env_steps_as_their_runs_measured():
    """configs/dm_control.yaml is every dm_control/ task's: docs/benchmarks.md's DeepMind Control rows are the
    sample-efficient preset's runs with it (benchmarks/mujoco.py's -ar2) and without it (-ar1)."""
    variants = benchmark_variants()
    for task in ("cartpole-swingup", "walker-walk", "cheetah-run", "reacher-easy"):
        env = ["--env", f"dm_control/{task}-v0", "--total-steps", "100000"]
        preset, _, _ = parse_args([*env, "--config", "sample-efficient"])
        assert preset.action_repeat == 2 and preset.agent.value_bins == 101
        assert preset == parse_args([*env, *variants["se-catlinf-hl-wn-grise20-pa-ar2"]])[0]
        without = parse_args([*env, *variants["se-catlinf-hl-wn-grise20-pa-ar1"]])[0]
        assert dataclasses.replace(without, action_repeat=2) == preset and without.action_repeat == 1
        assert resolve({"env": f"dm_control/{task}-v0"}).action_repeat == 2
    assert preset_paths("dm_control/walker-walk-v0", "sac")[0].name == "dm_control.yaml"
    assert "docs/benchmarks.md" in preset_paths("dm_control/walker-walk-v0", "sac")[0].read_text()
    assert resolve({"env": "Walker2d-v5"}).action_repeat == 1 and not preset_paths("playground/CartpoleBalance", "sac")


@pytest.mark.parametrize("env, act_dim", [("Hopper-v5", 3), ("HalfCheetah-v5", 6)])
def test_screened_base_is_the_preset_the_first_runs_measured(env, act_dim):
    """The se-* variants change one thing in the preset as it was before the 100k recipe (benchmarks/mujoco.py's
    SE, written out), whose returns come from runs in bf16 that wrote SimBa's target entropy out per env."""
    variants = benchmark_variants()
    steps = ["--total-steps", "50000"]
    base, _, _ = parse_args(["--env", env, *variants["se"], "--precision", "bf16", *steps])
    variant = f"crossq-512-utd2-bf16-compile-pd1-simbatemp-lr01-{env.split('-')[0].lower()}"
    measured, _, _ = parse_args(["--env", env, *variants[variant], *steps])
    target = base.agent.target_entropy_per_dim * act_dim
    assert base.agent.target_entropy is None and target == measured.agent.target_entropy
    written_out = dataclasses.replace(base.agent, target_entropy=target, target_entropy_per_dim=-1.0)
    assert base.lr_decay_steps == 50_000  # the measured runs' rates fell over their 50k: one schedule
    assert dataclasses.replace(base, agent=written_out, compile=True, lr_decay_steps=0) == measured


def test_unknown_named_preset_lists_the_known_ones():
    with pytest.raises(UserError, match="no named preset of that name .*sample-efficient"):
        resolve({}, "sample-efficent")
