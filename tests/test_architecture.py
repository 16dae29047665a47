"""The house: the agents apart from each other, the math apart from the machinery, old checkpoints at the door."""

import ast
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT

from pathwise import load_policy
from pathwise.agents.registry import AGENTS
from pathwise.agents.td3 import TD3Config
from pathwise.checkpoint import load_checkpoint
from pathwise.errors import UserError
from pathwise.logger import experiment_group
from pathwise.run import resume, resume_trainer, train
from pathwise.speed import Plan, accelerate
from pathwise.sweep import load_sweep

FORMAT_1 = ROOT / "tests" / "data" / "format1_sac_pendulum.pt"  # written by pathwise 0.1.0 before the change


@dataclasses.dataclass(frozen=True)
class ChangedTD3Config(TD3Config):
    """TD3 with a new field, a renamed default and another tau: what a change to one agent looks like."""

    tau: float = 0.5
    """Polyak step."""
    brand_new_knob: int = 7
    """A field no SAC run has heard of."""


def test_a_change_to_one_agent_changes_nothing_for_another(tiny, tmp_path, monkeypatch):
    config = tiny(total_steps=300)
    summary = train(config)
    obs = np.random.default_rng(0).uniform(-1, 1, (4, 3)).astype(np.float32)
    actions = load_policy(summary.checkpoint).act(obs)
    group = experiment_group(config)
    sweep_path = tmp_path / "sweep.yaml"
    sweep_path.write_text(yaml.safe_dump({"base": {"env": "Pendulum-v1", "agent": "sac", "total_steps": 1000},
                                          "space": {"sac.tau": {"grid": [0.01, 0.02]}}}))
    sweep = load_sweep(sweep_path)

    monkeypatch.setitem(AGENTS, "td3", ChangedTD3Config)
    assert set(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())) & set(AGENTS) == {"sac"}
    np.testing.assert_array_equal(load_policy(summary.checkpoint).act(obs), actions)
    assert experiment_group(config) == group
    assert load_sweep(sweep_path) == sweep
    assert resume(tmp_path / "run", {"total_steps": 400}).env_steps == 400


def test_a_checkpoint_of_format_1_loads_as_a_policy_and_is_refused_for_resume(tmp_path):
    payload = load_checkpoint(FORMAT_1)
    assert payload["format_version"] == 1 and set(payload["config"]) & set(AGENTS) == {"sac"}
    policy = load_policy(FORMAT_1)
    obs = np.array([[0.5, -0.5, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    # The actions pathwise 0.1.0's own load_policy gave for this file (observation normalization included).
    np.testing.assert_allclose(policy.act(obs), [[-0.12975001], [-0.20789146]], rtol=1e-6)
    run = tmp_path / "old_run" / "checkpoints"
    run.mkdir(parents=True)
    (run / FORMAT_1.name.replace("format1_sac_pendulum", "step_000000300")).write_bytes(FORMAT_1.read_bytes())
    with pytest.raises(UserError, match=r"earlier version of pathwise \(checkpoint format 1\).*not resumed"):
        resume_trainer(tmp_path / "old_run", {"total_steps": 600})


# What each part of the house may import, beside the standard library (docs/architecture.md draws the same).
LAYERS = {
    "agents": {"torch", "numpy", "pathwise.agents"},  # the math
    "envs": {"gymnasium", "numpy", "torch", "mujoco", "envpool", "jax", "mujoco_playground", "mjlab",
             "pathwise.envs", "pathwise.errors"},
    "pathwise/errors.py": set(),  # a leaf, so that envs/ may raise the error the command line speaks
    "pathwise/speed": {"torch", "numpy", "pathwise.agents", "pathwise.speed"},
}
CODE = ["agents", "envs", "pathwise", "tests", "benchmarks", *(p.name for p in ROOT.glob("*.py"))]


def imported(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):  # a relative import shows as ".name", which no rule allows
            names.add("." * node.level + (node.module or ""))
    return names


def python_files(part: str) -> list:
    return [ROOT / part] if part.endswith(".py") else sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", LAYERS)
def test_each_part_imports_only_what_its_layer_allows(part):
    allowed = LAYERS[part] | set(sys.stdlib_module_names)
    for path in python_files(part):
        outside = {n for n in imported(path) if not any(n == a or n.startswith(a + ".") for a in allowed)}
        assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"


def test_one_namespace_and_the_commands_on_top():
    for path in (f for part in CODE for f in python_files(part)):
        names = imported(path)
        assert not {n for n in names if n.split(".")[0] in ("agents", "envs")}, path.relative_to(ROOT)
        if path.is_relative_to(ROOT / "pathwise") and not path.is_relative_to(ROOT / "pathwise" / "commands"):
            assert not {n for n in names if n.startswith("pathwise.commands")}, path.relative_to(ROOT)


def test_the_math_loads_no_machinery_and_pathwise_imports_light():
    code = ("import sys; import pathwise.agents.registry, pathwise.agents.distributions, pathwise.agents.networks; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gymnasium', 'wandb', 'yaml') or "
            "m.startswith('pathwise.') and not m.startswith('pathwise.agents')); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = ("import sys, pathwise; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gymnasium') "
            "or m.startswith('pathwise.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_compiling_an_agent_leaves_the_process_wide_torch_settings_alone():
    import torch._inductor.config as inductor

    before = inductor.fallback_random
    for name, section in AGENTS.items():
        small = {"hidden_sizes": (8,)} if name != "crossq" else {"actor_hidden_sizes": (8,),
                                                                 "critic_hidden_sizes": (8,)}
        accelerate(section(**small).make_agent(3, 1, torch.device("cpu")), Plan.of("cpu", compile=True))
    assert inductor.fallback_random == before


def test_print_config_shows_the_resolved_yaml_with_only_the_chosen_agent(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--env", "HalfCheetah-v5", "--agent", "crossq",
                          "--critic-lr", "5e-4", "--print-config"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert config["agent"] == "crossq" and set(config) & set(AGENTS) == {"crossq"}
    assert config["learning_starts"] == 5000  # configs/crossq/HalfCheetah-v5.yaml
    assert config["total_steps"] == 1_000_000 and config["crossq"]["critic_lr"] == 5e-4
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_help_shows_the_values_this_run_would_use(tmp_path):
    def help_text(*args):
        out = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "--help"], capture_output=True,
                             text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return " ".join(out.stdout.split())

    crossq = help_text("--env", "HalfCheetah-v5", "--agent", "crossq")
    assert "random actions before the first update. [default: 5000]" in crossq  # the agent's preset
    assert "--critic-hidden-sizes N [N ...]" in crossq and "[default: 2048 2048]" in crossq
    assert "--tau" not in crossq  # SAC's and TD3's, not CrossQ's
    sac = help_text("--env", "Pendulum-v1")
    assert "Environment steps to train for. [default: 20000]" in sac and "[default: 0.001]" in sac
    assert "--critic-hidden-sizes" not in sac and "--tau X" in sac
