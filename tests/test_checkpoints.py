"""Saved policies: round trip, exact resume, kills and Ctrl-C, unsafe or broken files, export, evaluate.py."""

import csv
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pathwise import export_policy, load_policy
from pathwise.checkpoint import latest_checkpoint as load_checkpoint_path
from pathwise.checkpoint import load_checkpoint
from pathwise.envs import make_env
from pathwise.errors import UserError
from pathwise.policy import BoundedPolicy
from pathwise.run import build_trainer, resume, resume_trainer, train

ROOT = Path(__file__).resolve().parent.parent


def script(name, *args, timeout=300):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run([sys.executable, str(ROOT / name), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def agent_tensors(path):
    state = load_checkpoint(path)["agent_state"]
    tensors = {f"{part}.{k}": v for part in ("actor", "critic", "critic_target") for k, v in state[part].items()}
    tensors["log_alpha"] = state["log_alpha"]
    for i, moments in state["optimizer"]["state"].items():
        tensors.update({f"optimizer.{i}.{k}": v for k, v in moments.items()})
    return tensors


def test_round_trip_gives_the_trainers_actions_in_env_bounds(tiny):
    trainer = build_trainer(tiny())
    summary = trainer.run()
    trainer.close()
    policy = load_policy(summary.checkpoint.parent.parent)  # a run directory: its latest checkpoint
    assert policy.env_id == "Pendulum-v1" and policy.env_steps == 300
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32)
    expected = 2.0 * trainer.policy(deterministic=True)(obs)  # the trainer acts in [-1, 1]; Pendulum's bound is 2
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(policy.act(obs[0]), expected[0], rtol=1e-6, atol=1e-6)
    assert np.abs(policy.act(obs, deterministic=False)).max() <= 2.0
    with pytest.raises(ValueError, match="shape"):
        policy.act(np.zeros(4))


@pytest.mark.parametrize("num_envs, normalize_obs, n_step, reset_every, action_repeat",
                         [(1, False, 1, 0, 1), (2, True, 3, 200, 1), (1, False, 1, 0, 3)])
def test_resume_mid_episode_gives_the_same_parameters_as_an_uninterrupted_run(tiny, tmp_path, num_envs,
                                                                              normalize_obs, n_step, reset_every,
                                                                              action_repeat):
    # Pendulum episodes last 200 steps: the break at 300 falls in the middle of one (and between two resets).
    common = dict(total_steps=600, num_envs=num_envs, eval_episodes=1, normalize_obs=normalize_obs,
                  sac={"n_step": n_step}, reset_every=reset_every, action_repeat=action_repeat)
    straight = train(tiny(run_dir=str(tmp_path / "straight"), **common))
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 300}))
    resumed = resume(tmp_path / "split", {"total_steps": 600})
    assert resumed.env_steps == straight.env_steps == 600
    a, b = agent_tensors(straight.checkpoint), agent_tensors(resumed.checkpoint)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert resumed.eval_return_mean == straight.eval_return_mean
    buffers = [load_checkpoint(s.checkpoint)["buffer"] for s in (straight, resumed)]
    assert all(torch.equal(buffers[0][k], buffers[1][k]) for k in ("obs", "action", "next_obs", "reward", "ended"))
    if normalize_obs:
        stats = [load_checkpoint(s.checkpoint)["obs_normalizer"] for s in (straight, resumed)]
        assert all(torch.equal(stats[0][k], stats[1][k]) for k in stats[0])


def test_observation_normalization_travels_with_the_policy_into_load_and_export(tiny, tmp_path):
    trainer = build_trainer(tiny(normalize_obs=True))
    summary = trainer.run()
    trainer.close()
    assert trainer.normalizer.count > 300 and (trainer.normalizer.mean.abs() > 0).any()
    policy = load_policy(summary.checkpoint)
    obs = np.random.default_rng(2).uniform(-1, 1, (9, 3)).astype(np.float32)
    expected = 2.0 * trainer.policy(deterministic=True)(obs)  # the trainer normalizes before acting
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-5, atol=1e-6)
    unnormalized = BoundedPolicy(policy.module.actor, policy.module.action_low, policy.module.action_high)
    assert not np.allclose(unnormalized(torch.from_numpy(obs)).detach().numpy(), expected, atol=1e-3)
    export_policy(policy, tmp_path / "policy.pt2")
    exported = torch.export.load(tmp_path / "policy.pt2").module()
    with torch.no_grad():
        np.testing.assert_allclose(exported(torch.from_numpy(obs)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_the_policy_average_moves_each_float_toward_the_actor_by_its_rate_and_copies_counters():
    from pathwise.agents.crossq import CrossQConfig
    from pathwise.evaluation import PolicyAverage

    actor = CrossQConfig(actor_hidden_sizes=(8, 8)).make_actor(3, 1)
    average = PolicyAverage(actor, 0.25)
    before = {k: v.clone() for k, v in average.state_dict().items()}
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(1.0)
        actor(torch.randn(16, 3), train=True)  # batch renorm: running statistics and its step counter move
    average.update(actor)
    now, live = average.state_dict(), actor.state_dict()
    counters = [k for k in now if not now[k].is_floating_point()]
    assert counters and all(torch.equal(now[k], live[k]) for k in counters)
    for k in (k for k in now if now[k].is_floating_point()):
        torch.testing.assert_close(now[k], 0.75 * before[k] + 0.25 * live[k])
    assert not any(p.requires_grad for p in average.actor.parameters())


def test_a_run_with_a_policy_average_evaluates_saves_exports_and_resumes_that_average(tiny, tmp_path):
    # At rate 1 the average is the actor after every step: the same run, evaluation for evaluation.
    plain = train(tiny(run_dir=str(tmp_path / "plain"), eval_every=100))
    whole = train(tiny(run_dir=str(tmp_path / "whole"), eval_every=100, policy_average=1.0))
    assert whole.eval_return_mean == plain.eval_return_mean
    common = dict(total_steps=400, eval_every=100, policy_average=0.05)
    straight = build_trainer(tiny(run_dir=str(tmp_path / "straight"), **common))
    summary = straight.run()
    straight.close()
    payload = load_checkpoint(summary.checkpoint)
    average, actor = payload["policy_actor"], payload["agent_state"]["actor"]
    assert average.keys() == actor.keys() and not all(torch.equal(average[k], actor[k]) for k in actor)
    obs = np.random.default_rng(3).uniform(-1, 1, (8, 3)).astype(np.float32)
    expected = 2.0 * straight.policy()(obs)  # the average's actions, which load_policy and best.pt give
    np.testing.assert_allclose(load_policy(summary.checkpoint).act(obs), expected, rtol=1e-5, atol=1e-6)
    best = load_checkpoint(tmp_path / "straight", which="best")
    assert best["evaluation"]["env_steps"] == summary.best[0]
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 250}))
    resumed = resume(tmp_path / "split", {"total_steps": 400})
    again = load_checkpoint(resumed.checkpoint)["policy_actor"]
    assert all(torch.equal(average[k], again[k]) for k in average)
    assert resumed.eval_return_mean == summary.eval_return_mean


def test_the_benchmarks_average_at_a_rate_evaluates_as_the_run_whose_policy_is_that_average(tmp_path):
    # benchmarks/policy_average.py keeps averages beside an untouched run; its average at a rate is the policy of a
    # run with --policy-average at that rate, evaluation for evaluation (so one such run reports both).
    run = ("--env", "Pendulum-v1", "--total-steps", 400, "--learning-starts", 100, "--batch-size", 32,
           "--hidden-sizes", 16, 16, "--eval-every", 100, "--eval-episodes", 2, "--threads", 1, "--precision", "fp32",
           "--no-compile", "--wandb", "disabled")
    beside = script("benchmarks/policy_average.py", "--rates", 0.05, 1, "--", *run, "--run-dir", tmp_path / "beside")
    assert beside.returncode == 0, beside.stderr
    policy = script("train.py", *run, "--policy-average", 0.05, "--run-dir", tmp_path / "policy")
    assert policy.returncode == 0, policy.stderr
    with open(tmp_path / "beside" / "averaged.csv") as f:
        averaged = list(csv.DictReader(f))
    with open(tmp_path / "policy" / "evaluations.csv") as f:
        evaluated = list(csv.DictReader(f))
    with open(tmp_path / "beside" / "evaluations.csv") as f:
        actor = list(csv.DictReader(f))
    columns = ("env_steps", "return_mean", "return_std", "length_mean")
    assert len(evaluated) == 4
    for rate, expected in (("0.05", evaluated), ("1.0", actor)):
        rows = [{c: row[c] for c in columns} for row in averaged if row["rate"] == rate]
        assert rows == [{c: row[c] for c in columns} for row in expected]
    assert [row["return_mean"] for row in evaluated] != [row["return_mean"] for row in actor]


def test_resume_without_a_saved_buffer_goes_on_with_its_episode_in_flight(tiny, tmp_path):
    train(tiny(total_steps=250, save_buffer=False))
    saved = load_checkpoint(tmp_path / "run")["collector"]
    trainer = resume_trainer(tmp_path / "run", {"total_steps": 400})
    assert len(trainer.buffer) == 0 and trainer.env_steps == 250
    # The collector keeps its episode's actions itself: the episode goes on without the buffer.
    assert trainer.collector.ep_length.tolist() == [50]
    np.testing.assert_array_equal(trainer.collector.obs, saved["obs"].numpy())
    summary = trainer.run()
    trainer.close()
    assert summary.env_steps == 400 and "buffer" not in load_checkpoint(summary.checkpoint)


def test_resume_rebuilds_the_episodes_it_can_and_restarts_the_others(tiny, tmp_path):
    summary = train(tiny(num_envs=2, save_buffer=False))
    payload = torch.load(summary.checkpoint, weights_only=True)
    state = payload["collector"]
    assert state["ep_length"].tolist() == [150, 150] and state["episode_actions"][0].shape == (150, 1)
    state["obs"][1] += 1.0  # env 1's replay no longer reaches the observation saved: it cannot be rebuilt
    torch.save(payload, summary.checkpoint)
    trainer = resume_trainer(tmp_path / "run", {"total_steps": 400})
    collector = trainer.collector
    env = make_env("Pendulum-v1")
    obs, _ = env.reset(seed=int(state["episode_seeds"][0]))
    for action in state["episode_actions"][0].numpy():
        obs, *_ = env.step(action)
    np.testing.assert_array_equal(collector.obs[0], obs)  # rebuilt: its seed and its actions replayed
    assert collector.ep_length.tolist() == [150, 0] and collector.ep_return[0] == state["ep_return"][0]
    assert collector.episode_seeds[1] != state["episode_seeds"][1]  # restarted with a new seed
    assert trainer.run().env_steps == 400
    trainer.close()


def test_resume_forgets_evaluations_recorded_after_its_checkpoint(tiny, tmp_path):
    train(tiny(eval_every=100))
    evaluations = tmp_path / "run" / "evaluations.csv"
    with open(evaluations, "a") as f:  # what a run killed after step 300 had recorded past its checkpoint
        f.write("400,-1.0,0.0,200.0\n")
    resume(tmp_path / "run", {"total_steps": 500})
    steps = [int(line.split(",")[0]) for line in evaluations.read_text().splitlines()[1:]]
    assert steps == [100, 200, 300, 400, 500]


def test_resume_refuses_to_change_what_the_agent_learns_and_to_go_back(tiny, tmp_path):
    train(tiny())
    with pytest.raises(UserError, match="--batch-size cannot change in a resumed run"):
        resume_trainer(tmp_path / "run", {"batch_size": 8, "total_steps": 900})
    with pytest.raises(UserError, match="--agent cannot change in a resumed run"):
        resume_trainer(tmp_path / "run", {"agent": "td3", "total_steps": 900})
    with pytest.raises(UserError, match="--gamma cannot change in a resumed run"):
        resume_trainer(tmp_path / "run", {"gamma": 0.5, "total_steps": 900})
    with pytest.raises(UserError, match="total_steps in the command line must be an integer"):
        resume_trainer(tmp_path / "run", {"total_steps": "lots"})
    with pytest.raises(UserError, match="--resume takes a run directory"):
        resume_trainer(load_checkpoint_path(tmp_path / "run"), {"total_steps": 900})
    with pytest.raises(UserError, match="already trained 300 of its 300"):
        resume_trainer(tmp_path / "run", {})


# A run of a few seconds that checkpoints often, evaluates once at its end, and updates from step 100 on.
TINY_RUN = ("--env", "Pendulum-v1", "--learning-starts", 100, "--batch-size", 32, "--hidden-sizes", 16, 16,
            "--checkpoint-every", 200, "--eval-every", 0, "--eval-episodes", 1, "--threads", 1, "--wandb", "disabled")


def wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def start_training(run_dir, total_steps, wandb="disabled", *extra):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, "PYTHONPATH": str(ROOT),
           "HOME": str(run_dir.parent / "home")}
    args = ["--env", "Pendulum-v1", "--total-steps", total_steps, "--learning-starts", 100, "--batch-size", 32,
            "--hidden-sizes", 16, 16, "--checkpoint-every", 200, "--eval-episodes", 1, "--threads", 1,
            "--wandb", wandb, "--run-dir", run_dir, *extra]
    # A session of its own, so that a signal can go to the whole process group, as a terminal sends Ctrl-C.
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def checkpoint_steps(run_dir):
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.pt"))


@pytest.mark.slow
def test_a_run_killed_at_a_random_moment_resumes_from_its_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    process = start_training(run_dir, 4000)
    wait_for(lambda: checkpoint_steps(run_dir) if (run_dir / "checkpoints").is_dir() else False)
    time.sleep(random.uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    survivors = checkpoint_steps(run_dir)
    assert survivors and survivors[-1] < 4000
    load_checkpoint(run_dir)  # the latest one is whole, whatever the kill interrupted
    result = script("train.py", "--resume", run_dir)
    assert result.returncode == 0, result.stderr
    assert checkpoint_steps(run_dir)[-1] == 4000 and "Trained to 4,000 env steps" in result.stdout


@pytest.mark.parametrize("signum, vector_mode", [(signal.SIGINT, "sync"),
                                                pytest.param(signal.SIGTERM, "sync", marks=pytest.mark.slow),
                                                pytest.param(signal.SIGTERM, "async", marks=pytest.mark.slow)])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, signum, vector_mode):
    run_dir = tmp_path / "run"
    # wandb's service, and the async env workers, get the signal too, as from a terminal or `scancel`.
    process = start_training(run_dir, 100_000, "offline", "--vector-mode", vector_mode)
    wait_for(lambda: checkpoint_steps(run_dir) if (run_dir / "checkpoints").is_dir() else False)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum and "Traceback" not in stderr
    assert f"python train.py --resume {run_dir}" in stderr
    # Written at the step the interrupt arrived; where it arrived right after the periodic checkpoint at 200 (a busy
    # machine), before the next step, that checkpoint is the one named.
    step = checkpoint_steps(run_dir)[-1]
    assert step >= 200 and f"step_{step:09d}.pt" in stderr
    assert load_checkpoint(run_dir)["env_steps"] == step


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_is_refused_and_nothing_in_it_runs(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format_version": 1, "agent_state": Payload(marker)}, path)
    with pytest.raises(UserError, match="not a safe checkpoint and was not loaded: it asks for posix.system"):
        load_policy(path)
    result = script("evaluate.py", path)
    assert result.returncode == 2 and "not a safe checkpoint" in result.stderr and "Traceback" not in result.stderr
    with open(path, "wb") as f:  # a plain pickle, not a torch zip file
        pickle.dump(Payload(marker), f, protocol=2)
    with pytest.raises(UserError):
        load_policy(path)
    assert not marker.exists()


def test_corrupt_truncated_foreign_and_missing_files_get_one_sentence(tiny, tmp_path):
    summary = train(tiny())
    data = summary.checkpoint.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    old = tmp_path / "old.pt"
    torch.save({**torch.load(summary.checkpoint, weights_only=True), "format_version": 0}, old)
    (tmp_path / "empty").mkdir()
    cases = [(truncated, "truncated or corrupt"), (garbage, "truncated or corrupt"),
             (old, "has checkpoint format 0"), (tmp_path / "empty", "holds no checkpoint"),
             (tmp_path / "nowhere", "does not exist")]
    for path, message in cases:
        with pytest.raises(UserError, match=message):
            load_policy(path)
        result = script("evaluate.py", path)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_export_runs_without_the_package_and_matches_pytorch(tiny, tmp_path):
    summary = train(tiny())
    policy = load_policy(summary.checkpoint)
    result = script("export.py", summary.checkpoint, "-o", tmp_path / "policy.pt2")
    assert result.returncode == 0, result.stderr
    obs = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    code = ("import sys, numpy as np, torch\n"
            "sys.modules['pathwise'] = None  # prove the file needs no pathwise\n"
            "policy = torch.export.load('policy.pt2').module()\n"
            "with torch.no_grad():\n"
            "    for n in (1, 7):\n"
            "        np.save(f'actions{n}.npy', policy(torch.from_numpy(np.load('obs.npy')[:n])).numpy())\n")
    ran = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert ran.returncode == 0, ran.stderr
    for n in (1, 7):
        np.testing.assert_allclose(np.load(tmp_path / f"actions{n}.npy"), policy.act(obs[:n]), rtol=1e-5, atol=1e-6)
    export_policy(policy, tmp_path / "again.pt2")  # the Python API writes the same kind of file
    assert (tmp_path / "again.pt2").is_file()


def test_evaluate_prints_json_writes_videos_and_refuses_other_spaces(tiny, tmp_path):
    summary = train(tiny())
    result = script("evaluate.py", summary.checkpoint.parent.parent, "--episodes", 2, "--json",
                    "--video", tmp_path / "videos")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout holds the JSON alone: `evaluate.py RUN --json | jq .` works
    assert report["env_id"] == "Pendulum-v1" and report["env_steps"] == 300 and report["episodes"] == 2
    assert len(report["returns"]) == 2 and report["mean_return"] == pytest.approx(np.mean(report["returns"]))
    assert "return" in result.stderr and "+-" in result.stderr
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)
    other = script("evaluate.py", summary.checkpoint, "--env", "MountainCarContinuous-v0")
    assert other.returncode == 2 and "trained on Pendulum-v1" in other.stderr and "Traceback" not in other.stderr


def test_the_best_policy_is_kept_beside_the_last_and_each_command_can_pick_it(tiny, tmp_path):
    trainer = build_trainer(tiny(total_steps=500, eval_every=100, eval_episodes=2))
    evaluations = []
    trainer.on_evaluation.append(lambda step, mean, std: evaluations.append((step, mean)))
    summary = trainer.run()
    trainer.close()
    best_step, best_return = max(evaluations, key=lambda e: e[1])
    assert summary.best[:2] == (best_step, best_return) and "Best evaluation" in str(summary)
    best = load_checkpoint(tmp_path / "run", which="best")
    assert best["env_steps"] == best_step and best["evaluation"]["return_mean"] == best_return
    assert load_policy(tmp_path / "run").env_steps == 500  # the default: the policy the run ended with
    assert load_policy(tmp_path / "run", which="best").env_steps == best_step
    assert load_checkpoint(tmp_path / "run")["env_steps"] == 500  # resume and `last` never pick best.pt
    result = script("evaluate.py", tmp_path / "run", "--policy", "best", "--episodes", 1, "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["env_steps"] == best_step, result.stderr
    exported = script("export.py", tmp_path / "run", "--policy", "best", "-o", tmp_path / "best.pt2")
    assert exported.returncode == 0 and f"({best_step:,} env steps)" in exported.stdout
    wrong = script("evaluate.py", tmp_path / "run", "--policy", "bets")
    assert wrong.returncode == 2 and "invalid choice: 'bets'" in wrong.stderr and "Traceback" not in wrong.stderr
    with pytest.raises(UserError, match="last or best, not 'bets'"):
        load_policy(tmp_path / "run", which="bets")
    train(tiny(run_dir=str(tmp_path / "unevaluated"), eval_episodes=0))
    with pytest.raises(UserError, match="has no best policy yet"):
        load_policy(tmp_path / "unevaluated", which="best")


def test_the_summary_of_a_resumed_run_tells_this_sessions_figures_from_the_runs(tiny, tmp_path):
    first = train(tiny(total_steps=300))
    assert first.session_steps == first.env_steps == 300 and first.run_time == first.session_time
    second = resume(tmp_path / "run", {"total_steps": 500})
    third = resume(tmp_path / "run", {"total_steps": 600})
    assert (second.env_steps, second.session_steps, third.env_steps, third.session_steps) == (500, 200, 600, 100)
    assert third.steps_per_second == pytest.approx(100 / third.session_time)
    # The run's training time adds its sessions' (a session's time counts up to its last checkpoint).
    assert third.run_time == pytest.approx(first.session_time + second.session_time + third.session_time, rel=0.1)
    text = str(third)
    assert "Trained to 600 env steps: 100 in this session" in text and "the whole run took" in text


@pytest.mark.slow
def test_a_second_process_is_refused_a_run_that_is_still_training(tmp_path):
    run_dir = tmp_path / "run"
    process = start_training(run_dir, 100_000)
    try:
        wait_for(lambda: checkpoint_steps(run_dir) if (run_dir / "checkpoints").is_dir() else False)
        second = script("train.py", "--resume", run_dir, "--total-steps", 200_000)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"{run_dir} is in use by another training process (pid {process.pid})" in second.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 143  # its checkpoint is written; the lock went with the process
    resumed = script("train.py", "--resume", run_dir, "--total-steps", checkpoint_steps(run_dir)[-1] + 100)
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_sigterm_to_a_real_run_then_resume_gives_the_numbers_of_an_uninterrupted_run(tmp_path):
    straight = script("train.py", *TINY_RUN, "--total-steps", 1200, "--run-dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "split"
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, TINY_RUN), "--total-steps", "1200",
                                "--run-dir", str(run_dir)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_for(lambda: checkpoint_steps(run_dir) if (run_dir / "checkpoints").is_dir() else False)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    stopped_at = checkpoint_steps(run_dir)[-1]
    assert process.returncode == 143 and "Traceback" not in stderr and 200 <= stopped_at < 1200, stderr
    resumed = script("train.py", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    a, b = agent_tensors(tmp_path / "straight"), agent_tensors(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_a_second_signal_stops_at_once_and_the_last_whole_checkpoint_survives(tmp_path):
    run_dir = tmp_path / "run"
    process = start_training(run_dir, 100_000)
    wait_for(lambda: checkpoint_steps(run_dir) if (run_dir / "checkpoints").is_dir() else False)
    # Two signals in a row: the second lands while the first one's checkpoint is being written, or just after.
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in stderr, stderr
    assert "Continue with: python train.py --resume" in stderr
    payload = load_checkpoint(run_dir)  # whole, whichever checkpoint it is
    resumed = script("train.py", "--resume", run_dir, "--total-steps", payload["env_steps"] + 100)
    assert resumed.returncode == 0, resumed.stderr


def test_best_pt_follows_the_checkpoint_a_run_resumes_from(tiny, tmp_path):
    train(tiny(total_steps=600, eval_every=100, checkpoint_every=200, eval_episodes=1))
    assert load_checkpoint(tmp_path / "run", which="best")["env_steps"] > 400  # found after the step-400 checkpoint
    (tmp_path / "run" / "checkpoints" / "step_000000600.pt").unlink()  # go back to step 400, as after a crash
    earlier = load_checkpoint(tmp_path / "run")["trainer"]["best"]  # the best up to step 400
    trainer = resume_trainer(tmp_path / "run", {"total_steps": 500})
    best = load_checkpoint(tmp_path / "run", which="best")
    assert best["env_steps"] == earlier["env_steps"] <= 400
    assert best["evaluation"]["return_mean"] == earlier["return_mean"]
    assert all(torch.equal(best["agent_state"]["actor"][k], earlier["actor"][k]) for k in earlier["actor"])
    trainer.close()


def test_a_run_dir_with_only_a_best_policy_can_start_again(tiny, tmp_path):
    train(tiny(eval_every=100))
    for path in (tmp_path / "run" / "checkpoints").glob("step_*.pt"):
        path.unlink()  # as if killed after its first evaluation, before its first checkpoint
    with pytest.raises(UserError, match="holds no checkpoint"):
        resume_trainer(tmp_path / "run", {"total_steps": 400})
    assert train(tiny(eval_every=100)).env_steps == 300


def test_a_failed_build_releases_the_run_directory(tiny, tmp_path, monkeypatch):
    import pathwise.run

    def broken_logger(*args, **kwargs):
        raise RuntimeError("the logger could not start")

    monkeypatch.setattr(pathwise.run, "Logger", broken_logger)
    with pytest.raises(RuntimeError, match="could not start") as failure:
        build_trainer(tiny())
    monkeypatch.undo()
    trainer = build_trainer(tiny())  # not refused as "in use", though the failure's traceback is still held
    assert failure.value is not None
    trainer.close()
