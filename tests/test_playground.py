"""MuJoCo Playground's tasks behind the batched-env protocol (envs/playground.py): the same-step autoreset against
Playground's own reset and step, termination apart from truncation, the action repeat, a run that trains,
evaluates and resumes exactly, and bad input. Opt-in: they run where the `playground` extra is installed (JAX
compiles each task's step on the CPU first, some seconds a test)."""

import importlib.util

import numpy as np
import pytest
import torch

from pathwise.batched_collector import BatchedCollector
from pathwise.checkpoint import load_checkpoint
from pathwise.envs import make_batched_env
from pathwise.errors import UserError
from pathwise.run import resume, train

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mujoco_playground") is None,
                                reason="MuJoCo Playground is not installed (pip install -e \".[playground]\")")
TASK = "playground/CartpoleSwingup"


def reference(env_kwargs: dict | None = None):
    """Playground's own env, stepped by hand in JAX: what the engine must agree with."""
    import jax

    from pathwise.envs.playground import load
    env, _ = load(TASK, env_kwargs)
    return jax, env, jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))


def test_the_engine_steps_as_playground_and_autoresets_in_the_same_step_at_truncation():
    envs = make_batched_env(TASK, 3, "mjx", seed=7, env_kwargs={"episode_length": 4})
    jax, _, reset, step = reference({"episode_length": 4})
    key, sub = jax.random.split(jax.random.PRNGKey(7))  # the engine's key: split at the reset and every step
    state = reset(jax.random.split(sub, 3))
    np.testing.assert_allclose(envs.reset().numpy(), np.asarray(state.obs), atol=1e-6)
    rng = np.random.default_rng(0)
    for t in range(1, 7):
        action = rng.uniform(-1, 1, (3, 1)).astype(np.float32)
        out = envs.step(torch.from_numpy(action))
        state = step(state, jax.numpy.asarray(action))
        key, sub = jax.random.split(key)
        np.testing.assert_allclose(out.final_obs.numpy(), np.asarray(state.obs), atol=1e-5)
        np.testing.assert_allclose(out.reward.numpy(), np.asarray(state.reward), atol=1e-5)
        assert not out.terminated.any() and bool(out.truncated.all()) == (t == 4)
        if t == 4:  # every episode ended: the next observation is the new episode's first, drawn with this key
            state = reset(jax.random.split(sub, 3))
            np.testing.assert_allclose(out.next_obs.numpy(), np.asarray(state.obs), atol=1e-6)
            assert not torch.allclose(out.next_obs, out.final_obs)
        else:
            assert torch.equal(out.next_obs, out.final_obs)
        assert out.next_obs.dtype == out.reward.dtype == torch.float32 and out.next_obs.device.type == "cpu"


def test_termination_stays_apart_from_truncation_and_the_action_repeat_sums_rewards(monkeypatch):
    import jax.numpy as jnp

    from pathwise.envs import playground

    env, config = playground.load(TASK, {"action_repeat": 2, "episode_length": 20})

    class Falls:  # the cart-pole, "done" once the cart is 0.115 right of centre (at the 15th control step)
        observation_size, action_size = env.observation_size, env.action_size

        def reset(self, key):
            return env.reset(key)

        def step(self, state, action):
            state = env.step(state, action)
            return state.replace(done=jnp.where(state.obs[0] > 0.115, 1.0, 0.0))

    monkeypatch.setattr(playground, "_loaded", lambda *_: (Falls(), config))
    monkeypatch.setattr(playground, "_MADE", {})
    envs = playground.Playground(TASK, 2, seed=0)
    envs.reset()
    # By hand: env 0's episode, each action held for two control steps unless the first ends it.
    jax, _, _, _ = reference()
    _, sub = jax.random.split(jax.random.PRNGKey(0))
    state = Falls().reset(jax.random.split(sub, 2)[0])
    terminated, truncated, falls, early = [], [], 0, 0
    for _ in range(10):  # env 0 pushes right until it falls; env 1 pushes left and runs out of time
        out = envs.step(torch.tensor([[1.0], [-1.0]]))
        ended = out.terminated | out.truncated
        assert torch.equal(out.next_obs[~ended], out.final_obs[~ended])
        reward = 0.0
        for substep in range(2):
            state = Falls().step(state, jnp.ones(1))
            reward += float(state.reward)
            if state.done:
                early += substep == 0  # the engine must not step it again
                break
        assert bool(out.terminated[0]) == bool(state.done)
        np.testing.assert_allclose(out.final_obs[0].numpy(), np.asarray(state.obs), atol=1e-5)
        assert out.reward[0].item() == pytest.approx(reward, abs=1e-5)
        if state.done:  # the engine's env 0 starts anew; the reference goes on from that start
            falls += 1
            state = jax.tree.map(lambda leaf: leaf[0], envs.state)
        terminated.append(out.terminated.tolist())
        truncated.append(out.truncated.tolist())
    assert falls >= 1 and early >= 1 and not any(term[1] for term in terminated)
    assert [trunc[1] for trunc in truncated] == [False] * 9 + [True]  # 20 control steps at 2 an action
    monkeypatch.undo()

    jax, _, reset, step = reference()
    twice = playground.Playground(TASK, 1, seed=3, env_kwargs={"action_repeat": 2})
    _, sub = jax.random.split(jax.random.PRNGKey(3))
    state = reset(jax.random.split(sub, 1))
    twice.reset()
    action = jnp.full((1, 1), 0.5)
    first = step(state, action)
    second = step(first, action)
    out = twice.step(torch.full((1, 1), 0.5))
    np.testing.assert_allclose(out.reward.numpy(), np.asarray(first.reward + second.reward), atol=1e-5)
    np.testing.assert_allclose(out.final_obs.numpy(), np.asarray(second.obs), atol=1e-5)


def test_a_playground_run_trains_evaluates_and_resumes_exactly(tiny, tmp_path):
    common = dict(env=TASK, vector_mode="mjx", num_envs=4, total_steps=600, learning_starts=200, eval_episodes=1,
                  env_kwargs={"episode_length": 50})
    straight = train(tiny(run_dir=str(tmp_path / "straight"), **common))
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 320}))
    resumed = resume(tmp_path / "split", {"total_steps": 600})
    assert resumed.env_steps == straight.env_steps == 600
    a, b = (load_checkpoint(s.checkpoint) for s in (straight, resumed))
    for part in ("actor", "critic"):
        assert all(torch.equal(a["agent_state"][part][k], b["agent_state"][part][k]) for k in a["agent_state"][part])
    assert all(torch.equal(a["buffer"][k], b["buffer"][k]) for k in ("obs", "action", "next_obs", "reward", "ended"))
    assert resumed.eval_return_mean == straight.eval_return_mean


def test_staggered_first_episodes_end_apart_then_run_the_whole_limit():
    collector = BatchedCollector(make_batched_env(TASK, 6, "mjx", seed=0, env_kwargs={"episode_length": 20}),
                                 seed=0, stagger=True)
    collector.start()
    ends = {env: [] for env in range(6)}
    for step in range(45):
        transition, _, _ = collector.step(torch.zeros(6, 1))
        for env in torch.nonzero(transition[5]).flatten().tolist():
            ends[env].append(step)
    first = [ends[env][0] for env in range(6)]
    assert len(set(first)) > 1 and all(0 <= step < 20 for step in first)
    assert all(np.diff(ends[env]).tolist() == [20] * (len(ends[env]) - 1) for env in range(6))


def test_bad_input_is_one_sentence(tiny, tmp_path):
    with pytest.raises(UserError, match="--vector-mode mjx runs MuJoCo Playground's tasks"):
        make_batched_env("HalfCheetah-v5", 2, "mjx", seed=0)
    with pytest.raises(UserError, match="has no task 'CheetahSprint'"):
        make_batched_env("playground/CheetahSprint", 2, "mjx", seed=0)
    with pytest.raises(UserError, match="config has no no_such_field; it has .*episode_length"):
        make_batched_env(TASK, 2, "mjx", seed=0, env_kwargs={"no_such_field": 1})
    with pytest.raises(UserError, match="--vector-mode async cannot run 'playground/CartpoleSwingup'"):
        train(tiny(env=TASK, num_envs=2, vector_mode="async"))
    with pytest.raises(UserError, match="cannot render frames .* --video-every has nothing to record"):
        train(tiny(env=TASK, video_every=100))
    envs = make_batched_env(TASK, 2, "mjx", seed=0)
    envs.reset()
    saved = envs.state_dict()
    with pytest.raises(UserError, match="are not these 3: a resume keeps the task"):
        make_batched_env(TASK, 3, "mjx", seed=0).load_state_dict(saved)
