"""Watching training: wandb offline and read back with wandb's own reader, never a prompt, plots without wandb."""

import importlib.metadata
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pathwise.logger import experiment_group, resolve_wandb_mode

ROOT = Path(__file__).resolve().parent.parent
NAMED_METRICS = ("train/episode_return", "train/episode_length", "train/critic_loss", "train/actor_loss",
                 "train/alpha", "train/entropy", "train/q_mean", "eval/return_mean", "eval/return_std", "time/sps",
                 "train/critic_grad_norm", "train/actor_grad_norm", "train/log_std", "train/target_entropy",
                 "buffer/size", "time/env_fraction")


def no_wandb_account(tmp_path):
    """The environment of a user with no wandb account: no key, no mode, no netrc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "SDL_VIDEODRIVER": "dummy"}


def train_without_account(tmp_path, run_dir, *extra, stdin=subprocess.DEVNULL):
    args = ["--env", "Pendulum-v1", "--total-steps", "400", "--learning-starts", "100", "--batch-size", "32",
            "--hidden-sizes", "16", "16", "--eval-every", "200", "--eval-episodes", "1", "--log-every", "100",
            "--threads", "1", "--run-dir", str(run_dir), *extra]
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], env=no_wandb_account(tmp_path),
                          stdin=stdin, capture_output=True, text=True, timeout=240)


def inspect(run_path, summary=True):
    args = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_path)]
    out = subprocess.run(args + (["--summary"] if summary else []), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if summary else [json.loads(line) for line in out.stdout.splitlines() if line]


@pytest.mark.slow
def test_offline_run_without_account_is_read_back_with_the_named_metrics_and_config(tmp_path):
    run_dir = tmp_path / "run"
    result = train_without_account(tmp_path, run_dir, "--video-every", "400")  # stdin closed, no key, no mode
    assert result.returncode == 0, result.stderr
    assert "wandb: offline; upload later with: wandb sync" in result.stderr
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")  # wandb's files live inside the run directory
    report = inspect(offline_run)
    assert set(NAMED_METRICS) <= set(report["summary"]), set(NAMED_METRICS) - set(report["summary"])
    assert report["summary"]["_step"] == 400  # the x-axis is env steps
    config = report["config"]
    assert config["env"] == "Pendulum-v1" and config["sac"]["hidden_sizes"] == [16, 16]
    assert config["pathwise_version"] == importlib.metadata.version("pathwise-rl")
    assert "git_commit" in config and config["agent"] == "sac"
    assert {"Pendulum-v1", "sac", "seed1"} <= set(report["tags"])
    records = inspect(offline_run, summary=False)
    (run_record,) = [r["run"] for r in records if r["type"] == "run"]
    assert run_record["run_group"].startswith("Pendulum-v1__sac__")
    steps = [r["history"]["step"]["num"] for r in records if r["type"] == "history"]
    assert steps == sorted(steps) and steps[-1] == 400
    assert list((run_dir / "videos").glob("step_000000400-*.mp4"))
    logged = [k for r in records if r["type"] == "history" for k in r["history"]["item"]]
    assert "eval/video.path" in logged

    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(run_dir), "--total-steps",
                              "600"], env=no_wandb_account(tmp_path), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and runs[0].name.split("-")[-1] == runs[1].name.split("-")[-1]  # the same run id
    assert inspect(runs[1])["summary"]["_step"] == 600  # the step counter went on, not back
    # At the end of each session, the command that uploads the whole run: every offline session of it.
    assert f"upload this run with: wandb sync {runs[0]} {runs[1]}" in resumed.stderr


def test_a_terminal_on_stdin_gets_no_login_prompt_either(tmp_path):
    controller, terminal = pty.openpty()
    try:
        result = train_without_account(tmp_path, tmp_path / "run", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_wandb_mode_resolution(monkeypatch, tmp_path):
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_wandb_mode(None) == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert resolve_wandb_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode(None) == "disabled"
    assert resolve_wandb_mode("offline") == "offline"


def test_runs_that_differ_only_by_seed_share_a_group(tiny):
    a, b, c = tiny(seed=1), tiny(seed=2, run_dir="elsewhere"), tiny(seed=1, batch_size=64)
    assert experiment_group(a) == experiment_group(b) != experiment_group(c)


def test_plot_draws_seeds_as_one_curve_with_a_band(tiny, tmp_path):
    from pathwise.commands import plot
    from pathwise.run import train

    for seed in (1, 2):
        train(tiny(seed=seed, run_dir=str(tmp_path / f"s{seed}"), eval_every=100, total_steps=300))
    # a run written before a field was added (its config.yaml without it) groups with one that has its default
    config = tmp_path / "s2" / "config.yaml"
    config.write_text(config.read_text().replace("action_repeat: 1\n", ""))
    assert "action_repeat" not in config.read_text()
    groups = plot.group_runs([tmp_path / "s1", tmp_path / "s2"])
    assert len(groups) == 1 and len(groups[0][1]) == 2
    for method in ("iqm", "mean"):
        out = subprocess.run([sys.executable, str(ROOT / "plot.py"), str(tmp_path / "s1"), str(tmp_path / "s2"),
                              "-o", str(tmp_path / f"{method}.png"), "--aggregate", method], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert out.returncode == 0, out.stderr
        assert (tmp_path / f"{method}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, str(ROOT / "plot.py"), str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "is not a run directory" in bad.stderr and "Traceback" not in bad.stderr


def test_iqm_with_a_stratified_bootstrap_ci_and_mean_with_std():
    from pathwise.commands import plot

    values = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0], [100.0, -50.0]])  # five seeds, two steps
    # A quarter of five is cut from each end (one value): the mean of the middle three; the outlier is gone.
    np.testing.assert_allclose(plot.iqm(values), [2.0, 2.0])
    odd = np.random.default_rng(0).normal(size=(7, 3))
    np.testing.assert_allclose(plot.iqm(odd), np.sort(odd, axis=0)[1:6].mean(0))  # seven: one cut from each end

    steps = np.array([0, 10])
    curves = [(steps, row) for row in values]
    grid, center, lower, upper = plot.aggregate(curves)
    assert grid.tolist() == [0, 10] and center.tolist() == [2.0, 2.0]
    assert (lower <= center).all() and (center <= upper).all() and (upper > lower).all()
    # The CI is the percentile interval of the IQMs of resampled seeds: it lies within what resamples can give.
    assert (lower >= values.min(0)).all() and (upper <= values.max(0)).all()
    again = plot.aggregate(curves)
    assert all(np.array_equal(a, b) for a, b in zip(again, (grid, center, lower, upper)))  # seeded: reproducible
    same = [(steps, np.array([1.0, 2.0]))] * 4
    _, center, lower, upper = plot.aggregate(same)  # identical seeds: no uncertainty left
    assert center.tolist() == lower.tolist() == upper.tolist() == [1.0, 2.0]

    _, mean, lower, upper = plot.aggregate(curves[:4], method="mean")
    np.testing.assert_allclose(mean, [1.5, 2.5])
    np.testing.assert_allclose(upper - mean, values[:4].std(0))
    shorter = [(steps, np.zeros(2)), (steps[:1], np.ones(1))]
    assert plot.aggregate(shorter)[0].tolist() == [0]  # up to where every run has data


def test_progress_lines_are_plain_when_not_a_terminal(tmp_path):
    result = train_without_account(tmp_path, tmp_path / "run", "--wandb", "disabled")
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert len(lines) >= 4 and all("steps/s" in line and "ETA" in line for line in lines)
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr


@pytest.mark.slow
def test_metrics_go_to_tensorboard_files_with_wandbs_names_and_plot_draws_any_of_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pathwise.commands import plot

    run_dir = tmp_path / "run"
    result = train_without_account(tmp_path, run_dir, "--wandb", "disabled")  # as on a cluster without wandb
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(run_dir / "tensorboard"))  # TensorBoard's own reader
    events.Reload()
    assert set(NAMED_METRICS) <= set(events.Tags()["scalars"]), set(NAMED_METRICS) - set(events.Tags()["scalars"])
    critic = events.Scalars("train/critic_loss")
    assert [e.step for e in critic] == [200, 300, 400] and all(np.isfinite(e.value) for e in critic)
    assert [e.step for e in events.Scalars("eval/return_mean")] == [200, 400]
    out = subprocess.run([sys.executable, str(ROOT / "plot.py"), str(run_dir), "--metric", "train/critic_loss",
                          "-o", str(tmp_path / "critic.png")], capture_output=True, text=True,
                         env=no_wandb_account(tmp_path))
    assert out.returncode == 0 and (tmp_path / "critic.png").stat().st_size > 10_000, out.stderr
    _, steps, values = plot.read_run(run_dir, "train/critic_loss")
    assert steps.tolist() == [200, 300, 400] and np.allclose(values, [e.value for e in critic])
    missing = subprocess.run([sys.executable, str(ROOT / "plot.py"), str(run_dir), "--metric", "train/nothing"],
                             capture_output=True, text=True, env=no_wandb_account(tmp_path), cwd=tmp_path)
    assert missing.returncode == 2 and "none of the runs has recorded train/nothing" in missing.stderr

    quiet = tmp_path / "quiet"
    assert train_without_account(tmp_path, quiet, "--wandb", "disabled", "--no-tensorboard").returncode == 0
    assert not (quiet / "tensorboard").exists()
