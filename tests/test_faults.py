"""A run that survives a broken world: an env that raises or returns NaN, a disk that refuses a write, a run
directory left half-written by a crash, and runs killed again and again."""

import os
import random
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT

from pathwise.checkpoint import load_checkpoint
from pathwise.errors import UserError
from pathwise.run import build_trainer, resume, train
from pathwise.trainer import EnvStopped


def script(*args, limit_bytes=None, timeout=300):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")},
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}

    def limit():  # as `ulimit -f`: a write past it fails with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL,
                          preexec_fn=limit if limit_bytes else None)


def steps(run_dir) -> list[int]:
    return sorted(int(p.name[5:14]) for p in (run_dir / "checkpoints").glob("step_*.pt"))


FAULTY = ["--env", "toy_envs:Faulty-v0", "--learning-starts", 100, "--batch-size", 32, "--hidden-sizes", 16, 16,
          "--eval-episodes", 1, "--threads", 1, "--wandb", "disabled", "--precision", "fp32", "--no-compile"]


# ---- the env goes wrong ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, envs", [("sync", 1), ("async", 2)])
def test_an_env_that_raises_is_saved_at_the_step_before_in_one_sentence_and_resumes(tmp_path, mode, envs):
    run_dir, marker = tmp_path / "run", tmp_path / "fired"
    failed = script(*FAULTY, "--total-steps", 300, "--checkpoint-every", 100, "--run-dir", run_dir,
                    "--vector-mode", mode, "--num-envs", envs, "--env-kwargs", "fault=raise", "at=120",
                    f"marker={marker}")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    at, saved = 120 * envs, 119 * envs  # each sub-env's 120th step
    kept = f" (the env's traceback: {run_dir}/env_error.txt)" if mode == "sync" else ""  # a worker's stays there
    assert failed.stderr.strip().splitlines()[-1] == (
        f"error: environment 'toy_envs:Faulty-v0' raised RuntimeError in step: the simulator became unstable at "
        f"step {at}; the run was saved at step {saved} to {run_dir}/checkpoints/step_{saved:09d}.pt{kept}. "
        f"Continue with: python train.py --resume {run_dir}")
    if mode == "sync":
        assert 'raise RuntimeError("the simulator became unstable")' in (run_dir / "env_error.txt").read_text()
    assert steps(run_dir) == [saved // 100 * 100, saved]  # the periodic one before, and the one at the fault
    resumed = script("--resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert steps(run_dir)[-1] == 300 and f"Trained to 300 env steps: {300 - saved} in this session" in resumed.stdout


def test_an_env_that_cannot_reset_stops_in_one_sentence_before_or_after_its_first_step(tiny, tmp_path):
    import toy_envs

    trainer = build_trainer(tiny(env="Faulty-v0", env_kwargs={"fault": "reset", "at": 10**9}))
    faulty = trainer.collector.envs.envs[0]
    while not isinstance(faulty, toy_envs.Faulty):
        faulty = faulty.env
    faulty.at = 1  # the training env's first reset
    with pytest.raises(EnvStopped, match=r"^environment 'Faulty-v0' raised RuntimeError in reset: the simulator "
                                         r"could not start, before the run's first step; nothing was trained or "
                                         r"saved\.$"):
        trainer.run()
    trainer.close()
    assert steps(tmp_path / "run") == []
    # The second reset ends the first episode (200 steps): the run is saved as it was before that step.
    run_dir = tmp_path / "second"
    second = script(*FAULTY, "--total-steps", 300, "--checkpoint-every", 100, "--run-dir", run_dir, "--env-kwargs",
                    "fault=reset", "at=2", f"marker={tmp_path / 'fired'}")
    assert second.returncode == 2 and "at step 200; the run was saved at step 199" in second.stderr, second.stderr
    saved = load_checkpoint(run_dir)
    assert saved["env_steps"] == 199 and len(saved["collector"]["episode_actions"][0]) == 199
    resumed = script("--resume", run_dir)
    assert resumed.returncode == 0 and "Trained to 300 env steps: 101 in this session" in resumed.stdout, \
        resumed.stderr


@pytest.mark.parametrize("fault, what", [("nan_obs", "non-finite observation (nan at index 1)"),
                                         ("inf_obs", "non-finite observation (inf at index 0)"),
                                         ("nan_reward", "non-finite reward (nan)")])
def test_a_non_finite_observation_or_reward_never_reaches_the_buffer_or_the_weights(tiny, tmp_path, fault, what):
    config = tiny(env="Faulty-v0", env_kwargs={"fault": fault, "at": 150, "marker": str(tmp_path / "fired")},
                  normalize_obs=True, checkpoint_every=100)
    with pytest.raises(EnvStopped, match=rf"returned a {what.replace('(', '.').replace(')', '.')} at step 150; "
                                         r"the run was saved at step 149"):
        train(config)
    saved = load_checkpoint(config.run_dir)
    assert saved["env_steps"] == 149
    tensors = [*(saved["buffer"][k] for k in ("obs", "reward", "next_obs")), *saved["obs_normalizer"].values(),
               *(v for part in ("actor", "critic") for v in saved["agent_state"][part].values())]
    assert all(torch.isfinite(t.float()).all() for t in tensors)
    assert resume(config.run_dir, {}).env_steps == 300


def test_asked_to_drop_the_run_drops_that_episode_and_goes_on(tiny, tmp_path, capsys, monkeypatch):
    config = tiny(env="Faulty-v0", env_kwargs={"fault": "nan_obs", "at": 150}, on_nonfinite="drop",
                  normalize_obs=True, total_steps=400, log_every=400, eval_episodes=0)
    trainer = build_trainer(config)
    logged = []
    monkeypatch.setattr(trainer.logger, "log", lambda metrics, step: logged.append(metrics))
    summary = trainer.run()
    trainer.close()
    assert summary.env_steps == 400
    assert ("note: environment 'Faulty-v0' returned a non-finite observation (nan at index 1) at step 150; its "
            "episode (150 transitions) was dropped.") in capsys.readouterr().err
    buffer = trainer.buffer
    # The first episode's 150 rows, the zeroed one at its end included, are never drawn; the rest are.
    assert buffer.n_dropped == 150 and len(buffer) == 250 and buffer.dropped[:150].all()
    drawn = []
    monkeypatch.setattr(buffer, "gather", lambda idx: drawn.append(idx.clone()))
    for _ in range(50):
        buffer.sample(256)
    drawn = torch.cat(drawn)
    assert drawn.min() >= 150 and len(drawn.unique()) == 250
    assert torch.isfinite(buffer.obs[:400]).all() and all(torch.isfinite(v).all()
                                                         for v in trainer.normalizer.state_dict().values())
    assert logged[-1]["train/dropped_episodes"] == 1 and trainer.dropped_episodes == 1
    saved = load_checkpoint(config.run_dir)
    assert int(saved["buffer"]["dropped"].sum()) == 150 and saved["trainer"]["dropped_episodes"] == 1


def test_the_rows_of_a_dropped_episode_are_sampled_again_once_written_again():
    from pathwise.replay_buffer import ReplayBuffer

    buffer = ReplayBuffer(8, 1, 1, torch.device("cpu"), num_envs=2)
    for t in range(3):  # sub-env 0's rows 0, 2, 4; sub-env 1's 1, 3, 5
        buffer.add(np.full((2, 1), t), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)), np.zeros(2))
    buffer.drop(1, 2)  # sub-env 1's newest two
    assert buffer.dropped.nonzero().flatten().tolist() == [3, 5] and len(buffer) == 4
    state = buffer.state_dict()
    buffer.add(np.ones((2, 1)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)), np.zeros(2))  # rows 6, 7
    buffer.add(np.ones((2, 1)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)), np.zeros(2))  # rows 0, 1
    buffer.add(np.ones((2, 1)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)), np.zeros(2))  # rows 2, 3
    assert buffer.dropped.nonzero().flatten().tolist() == [5] and len(buffer) == 7
    buffer.load_state_dict(state)  # a checkpoint keeps which rows are dropped
    assert buffer.dropped.nonzero().flatten().tolist() == [3, 5] and len(buffer) == 4


def test_an_evaluation_env_that_raises_stops_the_run_saved(tiny, tmp_path):
    config = tiny(env="Faulty-v0", env_kwargs={"fault": "raise", "at": 201}, eval_every=200, total_steps=400)
    with pytest.raises(EnvStopped, match=r"raised RuntimeError in step: the simulator became unstable in the "
                                         r"evaluation at step 200; the run was saved at step 200"):
        train(config)  # the evaluation env's first episode runs 200 steps; its 201st is the next episode's first
    assert load_checkpoint(config.run_dir)["env_steps"] == 200


# ---- the disk goes wrong ---------------------------------------------------------------------------------------


def test_a_checkpoint_the_disk_refuses_leaves_the_one_before_whole(tmp_path):
    run_dir = tmp_path / "run"
    # The buffer's rows make each checkpoint about 4 kB larger than the one 100 steps before: with a file-size limit
    # just above the checkpoint at 300, the ones at 400 and 500 (periodic) and 600 (the final one) cannot be written.
    ok = script(*FAULTY, "--env", "Pendulum-v1", "--total-steps", 300, "--checkpoint-every", 100,
                "--run-dir", tmp_path / "probe")
    assert ok.returncode == 0, ok.stderr
    limit = (tmp_path / "probe" / "checkpoints" / "step_000000300.pt").stat().st_size + 100
    result = script(*FAULTY, "--env", "Pendulum-v1", "--total-steps", 600, "--checkpoint-every", 100,
                    "--run-dir", run_dir, limit_bytes=limit)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: could not write")]
    assert [w.split("checkpoints/")[1][:17] for w in warnings] == ["step_000000400.pt", "step_000000500.pt"]
    assert all("(File too large" in w and w.endswith("Training goes on.") for w in warnings)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not write {run_dir}/checkpoints/step_000000600.pt (File too large")
    assert steps(run_dir) == [200, 300] and not list(run_dir.glob("checkpoints/*.tmp"))
    assert load_checkpoint(run_dir)["env_steps"] == 300  # whole, and the run resumes from it
    resumed = script("--resume", run_dir, "--total-steps", 400)
    assert resumed.returncode == 0 and steps(run_dir)[-1] == 400, resumed.stderr


def test_resume_clears_what_a_crash_left_and_goes_on_from_the_last_whole_checkpoint(tiny, tmp_path, capsys):
    config = tiny(checkpoint_every=100)
    train(config)
    folder = tmp_path / "run" / "checkpoints"
    newest = folder / "step_000000300.pt"
    newest.write_bytes(newest.read_bytes()[:5000])  # cut off, as by a full disk before atomic writes
    (folder / "step_000000350.pt.tmp").write_bytes(b"half")  # a write a kill interrupted
    capsys.readouterr()
    summary = resume(config.run_dir, {"total_steps": 400})
    notes = capsys.readouterr().err
    assert "note: Removed" in notes and "step_000000350.pt.tmp, a checkpoint whose writing was cut off" in notes
    assert "step_000000300.pt is not a readable checkpoint" in notes
    assert "set aside as step_000000300.pt.unreadable" in notes
    assert summary.env_steps == 400 and summary.session_steps == 200  # from the whole one at 200
    assert not list(folder.glob("*.tmp")) and (folder / "step_000000300.pt.unreadable").is_file()
    assert [p.name for p in sorted(folder.glob("step_*.pt"))] == ["step_000000300.pt", "step_000000400.pt"]


def test_a_run_dir_with_no_whole_checkpoint_says_so(tiny, tmp_path):
    config = tiny(checkpoint_every=0, total_steps=200)
    train(config)
    (final,) = (tmp_path / "run" / "checkpoints").glob("step_*.pt")
    final.write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(UserError, match=r"holds no whole checkpoint to resume from: .* is not a readable checkpoint"):
        resume(config.run_dir, {"total_steps": 400})


# ---- killed again and again ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_killed_twenty_times_ends_as_the_run_never_stopped(tmp_path):
    """SIGKILL and SIGTERM at seeded random moments, some while a checkpoint is being written; each time resumed.
    The end matches an uninterrupted run of the same seed: weights, evaluations, steps."""
    args = ["--env", "Pendulum-v1", "--total-steps", 3000, "--learning-starts", 100, "--batch-size", 32,
            "--hidden-sizes", 16, 16, "--checkpoint-every", 50, "--eval-every", 500, "--eval-episodes", 1,
            "--threads", 1, "--wandb", "disabled", "--precision", "fp32", "--no-compile"]
    whole = script(*args, "--run-dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    run_dir, rng = tmp_path / "run", random.Random(7)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, "PYTHONPATH": str(ROOT)}
    kills, during_write, cleared, started = 0, 0, 0, time.perf_counter()
    command = [*args, "--run-dir", run_dir]
    while True:
        process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, command)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL)
        command = ["--resume", run_dir]
        first = steps(run_dir)[-1] if (run_dir / "checkpoints").is_dir() and steps(run_dir) else -1
        while process.poll() is None and (not (run_dir / "checkpoints").is_dir() or steps(run_dir)[-1:] == [first]
                                          or not steps(run_dir)):
            time.sleep(0.01)  # progress made in this process: a checkpoint newer than the one it resumed from
        if process.poll() is None and kills < 24:
            if rng.random() < 0.4:  # during a write: the moment a temporary checkpoint file appears
                deadline = time.time() + 5
                while process.poll() is None and time.time() < deadline and \
                        not list((run_dir / "checkpoints").glob("*.tmp")):
                    time.sleep(0.0005)
            else:  # after 0 or 1 more checkpoints and a moment: a random point of the run's own progress, so that
                # a faster CPU, which trains further in a given time, is killed as often
                target = steps(run_dir)[-1] + 50 * rng.randint(0, 1)
                while process.poll() is None and steps(run_dir)[-1] < target:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.05))
            signum = rng.choice([signal.SIGKILL, signal.SIGTERM])
            if process.poll() is None:
                during_write += bool(list((run_dir / "checkpoints").glob("*.tmp")))
                process.send_signal(signum)
                kills += 1
        out, err = process.communicate(timeout=300)
        assert "Traceback" not in err, err
        cleared += err.count("a checkpoint whose writing was cut off")
        if process.returncode == 0 or steps(run_dir)[-1] == 3000:  # done (a kill may land after the last save)
            break
        assert process.returncode in (-signal.SIGKILL, 128 + signal.SIGTERM), err
    took = time.perf_counter() - started
    print(f"survived {kills} interruptions ({during_write} during a checkpoint write, {cleared} cut-off files "
          f"cleared) in {took:.0f} s")
    assert kills >= 20 and during_write >= 1
    final, reference = load_checkpoint(run_dir), load_checkpoint(tmp_path / "whole")
    assert final["env_steps"] == reference["env_steps"] == 3000
    for part in ("actor", "critic", "critic_target"):
        for key, value in reference["agent_state"][part].items():
            assert torch.equal(final["agent_state"][part][key], value), (part, key)
    evaluations = [(tmp_path / d / "evaluations.csv").read_text() for d in ("run", "whole")]
    assert evaluations[0] == evaluations[1]  # the same steps, the same returns: none lost, none repeated
    assert np.isfinite(final["trainer"]["last_eval"][0])
