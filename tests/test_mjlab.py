"""mjlab's tasks behind the batched-env protocol (envs/mjlab.py): steps as mjlab's own env steps them, the last
observation of an ended episode kept and the reset in the same step, the envs' random draws their own, a run that
trains, evaluates and resumes (its episodes anew), staggered time limits, and bad input. Opt-in: they run where the
`mjlab` extra is installed (its own environment: it wants MuJoCo 3.11; Warp builds its CPU kernels the first time,
a minute or two, then caches them)."""

import contextlib
import importlib.util
import io

import numpy as np
import pytest
import torch

from pathwise.batched_collector import BatchedCollector
from pathwise.envs import make_batched_env
from pathwise.errors import UserError
from pathwise.run import resume, train

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mjlab") is None,
                                reason="mjlab is not installed (pip install -e \".[mjlab]\", in an environment of its "
                                       "own)")
TASK = "mjlab/Cartpole-Swingup"


def reference(num_envs: int, seed: int, **fields):
    """mjlab's own env of the task, auto-reset off, its draws from torch's global generator seeded as the engine
    seeds its own: what the engine must agree with."""
    from pathwise.envs.mjlab import _config, _registry
    _, envs = _registry()
    config = _config(TASK, num_envs, fields)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        return envs.ManagerBasedRlEnv(cfg=config, device="cpu")


def test_the_engine_steps_as_mjlab_and_resets_an_ended_env_in_the_same_step():
    envs = make_batched_env(TASK, 3, "mjlab", seed=7, env_kwargs={"episode_length_s": 0.2})  # 4 control steps
    own = torch.get_rng_state()
    ref = reference(3, 7, episode_length_s=0.2)
    assert envs.obs_dim == 5 and envs.act_dim == 1 and envs.time_limit == 4
    np.testing.assert_array_equal(envs.reset().numpy(), ref.reset()[0]["actor"].numpy())
    rng = np.random.default_rng(0)
    for t in range(1, 7):
        action = torch.from_numpy(rng.uniform(-1, 1, (3, 1)).astype(np.float32))
        out = envs.step(action)
        obs, reward, terminated, truncated, _ = ref.step(action)
        np.testing.assert_array_equal(out.final_obs.numpy(), obs["actor"].numpy())  # the episode's last, not reset
        np.testing.assert_array_equal(out.reward.numpy(), reward.numpy())
        assert not out.terminated.any() and bool(out.truncated.all()) == (t == 4) and torch.equal(out.truncated,
                                                                                                  truncated)
        if t == 4:  # every episode ended: the next observation is the new episode's first
            fresh = ref.reset(env_ids=torch.arange(3))[0]["actor"]
            np.testing.assert_array_equal(out.next_obs.numpy(), fresh.numpy())
            assert not torch.allclose(out.next_obs, out.final_obs)
        else:
            assert torch.equal(out.next_obs, out.final_obs)
        assert out.next_obs.dtype == out.reward.dtype == torch.float32 and out.next_obs.device.type == "cpu"
    torch.set_rng_state(own)
    ref.close()
    envs.close()


def test_the_envs_draws_are_their_own_and_an_env_that_ends_alone_is_reset_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    envs = make_batched_env(TASK, 2, "mjlab", seed=1, env_kwargs={"episode_length_s": 0.2})
    envs.reset()
    envs.start_elapsed(np.array([2, 0]))  # env 0's episode is two steps old: it ends two steps before env 1's
    ended = []
    for _ in range(4):
        out = envs.step(torch.zeros(2, 1))
        ended.append((out.terminated | out.truncated).tolist())
        done = out.truncated
        assert torch.equal(out.next_obs[~done], out.final_obs[~done])
        if done.any():
            assert out.next_obs[done, 0].abs().max().item() == 0.0  # a new episode's cart starts at the centre
    assert ended == [[False, False], [True, False], [False, False], [False, True]]
    assert torch.equal(torch.rand(3), expected)  # mjlab drew its resets and noise from the engine's state
    envs.close()


def test_an_mjlab_run_trains_evaluates_and_resumes_with_its_episodes_anew(tiny, tmp_path, capsys):
    common = dict(env=TASK, vector_mode="mjlab", num_envs=4, total_steps=400, learning_starts=200, eval_episodes=1,
                  env_kwargs={"episode_length_s": 2.5})
    straight = train(tiny(run_dir=str(tmp_path / "straight"), **common))
    assert straight.env_steps == 400 and np.isfinite(straight.eval_return_mean)
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 240}))
    resumed = resume(tmp_path / "split", {"total_steps": 400})
    assert resumed.env_steps == 400
    assert "cannot put its 4 episodes in flight back; they begin anew" in capsys.readouterr().err


def test_staggered_first_episodes_end_apart_then_run_the_whole_limit():
    collector = BatchedCollector(make_batched_env(TASK, 6, "mjlab", seed=0, env_kwargs={"episode_length_s": 0.5}),
                                 seed=0, stagger=True)
    collector.start()
    ends = {env: [] for env in range(6)}
    for step in range(25):
        transition, _, _ = collector.step(torch.zeros(6, 1))
        for env in torch.nonzero(transition[5]).flatten().tolist():
            ends[env].append(step)
    first = [ends[env][0] for env in range(6)]
    assert len(set(first)) > 1 and all(0 <= step < 10 for step in first)
    assert all(np.diff(ends[env]).tolist() == [10] * (len(ends[env]) - 1) for env in range(6))


def test_bad_input_is_one_sentence():
    with pytest.raises(UserError, match="--vector-mode mjlab runs mjlab's tasks"):
        make_batched_env("HalfCheetah-v5", 2, "mjlab", seed=0)
    with pytest.raises(UserError, match="mjlab has no task 'Mjlab-Cartpole-Spin'.*Cartpole-Swingup"):
        make_batched_env("mjlab/Cartpole-Spin", 2, "mjlab", seed=0)
    with pytest.raises(UserError, match="config has no no_such_field; it has .*episode_length_s"):
        make_batched_env(TASK, 2, "mjlab", seed=0, env_kwargs={"no_such_field": 1})
