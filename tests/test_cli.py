"""train.py as a user runs it: a subprocess, its exit code, what it prints."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_train(*args, cwd=ROOT, timeout=300):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    env.pop("WANDB_MODE", None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_train_runs_learns_updates_and_saves(tmp_path):
    result = run_train("--env", "Pendulum-v1", "--total-steps", "600", "--learning-starts", "200",
                       "--batch-size", "64", "--hidden-sizes", "32", "32", "--eval-episodes", "2",
                       "--wandb", "disabled", "--run-dir", str(tmp_path / "run"), "--threads", "1",
                       "--log-every", "200")
    assert result.returncode == 0, result.stderr
    assert "Final evaluation return:" in result.stdout and "Trained to 600 env steps" in result.stdout
    assert "step 600/600" in result.stderr and "\r" not in result.stderr  # plain lines when not a terminal
    assert (tmp_path / "run" / "checkpoints" / "step_000000600.pt").is_file()


@pytest.mark.parametrize("args, message", [
    (["--env", "Pendulm-v1"], "unknown environment 'Pendulm-v1'; did you mean Pendulum-v1"),
    (["--env", "CartPole-v1"], "Discrete action space"),
    (["--batch-size", "0"], "batch_size must be a positive integer"),
    (["--batch-size", "many"], "batch_size .* must be an integer, got 'many'"),
    (["--config", "missing.yaml"], "config file missing.yaml does not exist"),
    (["--btach-size", "3"], "unrecognized arguments: --btach-size 3 \\(did you mean --batch-size\\?\\)"),
    (["--device", "cuda:0"], "--device cuda:0 was asked for, but torch sees"),
    (["--seed", "-1"], "seed must lie in"),
    (["--policy-delay", "3"], "--policy-delay is a flag of td3 and crossq, not of sac"),
    (["--agent", "crossq", "--tau", "0.1"], "--tau is a flag of sac, td3 and tqc, not of crossq"),
    (["--agent", "ppo"], "unknown agent .ppo. in the command line; the agents are sac, td3, crossq, tqc"),
    (["--gamma", "nan"], "gamma .* must be a finite number"),
    (["--run-dir", "README.md"], "is a file"),
])
def test_bad_input_gets_one_sentence_and_a_nonzero_exit(tmp_path, args, message):
    import re
    if "--run-dir" not in args:
        args = [*args, "--run-dir", str(tmp_path / "run")]
    (tmp_path / "README.md").write_text("not a folder")
    result = run_train(*args, "--wandb", "disabled", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # argparse adds its usage line


def test_help_lists_every_flag_in_one_line(tmp_path):
    result = run_train("--help")
    assert result.returncode == 0 and "--total-steps" in result.stdout and "--hidden-sizes" in result.stdout


def test_log_lines_one_per_step_and_an_eta_only_from_the_learning_phase(tmp_path):
    result = run_train("--env", "Pendulum-v1", "--total-steps", "500", "--learning-starts", "200",
                       "--batch-size", "32", "--hidden-sizes", "16", "16", "--eval-every", "200", "--log-every", "100",
                       "--eval-episodes", "1", "--wandb", "disabled", "--run-dir", str(tmp_path / "run"),
                       "--threads", "1")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    steps = [line.split()[1].split("/")[0] for line in lines]
    assert steps == ["100", "200", "300", "400", "500"], lines  # evaluations at 200 and 400 are in their line
    assert "ETA estimating" in lines[0] and "ETA estimating" in lines[1]  # random actions: no honest ETA yet
    assert "ETA estimating" not in lines[2] and "eval " in lines[1] and "eval " in lines[3]


def test_the_headline_names_what_shapes_the_env_steps():
    from pathwise.commands.train import headline
    from pathwise.config import resolve
    assert headline(resolve({"env": "Pendulum-v1"})) == "Training SAC on Pendulum-v1 for 20,000 env steps (seed 1)."
    shaped = headline(resolve({"env": "Pendulum-v1", "num_envs": 2, "vector_mode": "sync", "action_repeat": 3,
                               "seed": 5}))
    assert shaped.endswith("(2 sync envs, each action held for 3 env steps, seed 5).")
    goals = headline(resolve({"env": "PointGoal-v0", "her": True, "her_relabels": 2}))
    assert "(hindsight relabelling with 2 future goals a transition, seed 1)." in goals
