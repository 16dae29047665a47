"""Batched envs (envs/batched.py): the torch-native tasks against Gymnasium's, the protocol's same-step autoreset at
both kinds of end, the collector, buffer and n-step returns on tensors, many-env runs, and EnvPool behind it."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch

from pathwise.batched_collector import BatchedCollector
from pathwise.checkpoint import load_checkpoint
from pathwise.collector import Collector
from pathwise.envs import make_batched_env, make_vector_env
from pathwise.envs.torch_envs import CartPole, Pendulum
from pathwise.errors import UserError
from pathwise.replay_buffer import ReplayBuffer
from pathwise.run import resume, train

HAS_ENVPOOL = importlib.util.find_spec("envpool") is not None
needs_envpool = pytest.mark.skipif(not HAS_ENVPOOL, reason="EnvPool is not installed (pip install -e \".[envpool]\")")


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_torch_pendulum_steps_as_gymnasiums_pendulum(dtype, tolerance):
    gym_env = gym.make("Pendulum-v1").unwrapped
    gym_env.reset(seed=0)
    batch = Pendulum(3, dtype=dtype)
    torch.manual_seed(0)
    batch.reset()
    rng = np.random.default_rng(0)
    for _ in range(199):  # a whole episode, from each of the batch's states in turn
        start, action = batch.state.double().numpy().copy(), rng.uniform(-1, 1, (3, 1))
        out = batch.step(torch.as_tensor(action))
        for i in range(3):
            gym_env.state = start[i]
            obs, reward, terminated, truncated, _ = gym_env.step(2.0 * action[i])  # Pendulum's torque bound is 2
            np.testing.assert_allclose(out.final_obs[i].numpy(), obs, atol=tolerance)
            assert out.reward[i].item() == pytest.approx(reward, abs=tolerance * 10)
            assert not out.terminated[i] and not out.truncated[i]


def test_torch_cart_pole_steps_and_terminates_as_gymnasiums_cart_pole():
    gym_env = gym.make("CartPole-v1").unwrapped
    gym_env.reset(seed=0)
    batch = CartPole(1, dtype=torch.float64)
    torch.manual_seed(0)
    batch.reset()
    rng = np.random.default_rng(1)
    for step in range(500):
        gym_env.state = batch.state[0].numpy().copy()
        push = int(rng.integers(2))  # CartPole-v1's actions: full force left or right
        obs, reward, terminated, _, _ = gym_env.step(push)
        out = batch.step(torch.tensor([[2.0 * push - 1.0]]))
        np.testing.assert_allclose(out.final_obs[0].numpy(), obs, atol=1e-6)
        assert out.reward[0].item() == reward == 1.0 and bool(out.terminated[0]) == terminated
        if terminated:
            assert step < 100  # random pushes tip the pole over soon
            break
    assert terminated
    assert not out.truncated[0] and out.next_obs[0].abs().max() <= 0.05  # the next episode's first state


def test_the_same_step_autoreset_keeps_the_true_last_observation_at_truncation():
    torch.manual_seed(3)
    batch = Pendulum(4)
    obs = batch.reset()
    for step in range(1, 201):
        state = batch.state.clone()
        out = batch.step(torch.zeros(4, 1))
        expected_obs = Pendulum.observe(batch, Pendulum.dynamics(batch, state, torch.zeros(4, 1))[0])
        torch.testing.assert_close(out.final_obs, expected_obs)
        assert not out.terminated.any() and out.truncated.all() == (step == 200)
        if step < 200:
            assert torch.equal(out.next_obs, out.final_obs)
        obs = out.next_obs
    assert not torch.equal(obs, out.final_obs) and (batch.elapsed == 0).all()  # begun anew, in the same step
    assert batch.step(torch.zeros(4, 1)).truncated.sum() == 0


def test_torch_tasks_step_without_a_host_sync():
    # fullgraph=True refuses any graph break: a .item(), a bool() of a tensor, or a Python branch on a value
    for task in (Pendulum, CartPole):
        batch = task(8)
        batch.reset()
        step = torch.compile(batch.step, fullgraph=True, backend="eager")
        for _ in range(3):
            out = step(torch.rand(8, 1) * 2 - 1)
        assert out.next_obs.shape == (8, task.obs_dim)


def test_the_collector_stores_tensors_and_n_step_sums_stop_at_both_kinds_of_end():
    # Two cart-poles pushed hard one way terminate; a pendulum batch truncates at 200.
    for task, action, steps in ((CartPole, 1.0, 40), (Pendulum, 0.5, 210)):
        envs = task(2)
        collector = BatchedCollector(envs, seed=0)
        buffer = ReplayBuffer(1000, task.obs_dim, 1, torch.device("cpu"), gamma=0.5, n_step=3, num_envs=2)
        collector.start()
        ends = []
        for step in range(steps):
            obs = collector.obs.clone()
            transition, finished, dropped = collector.step(torch.full((2, 1), action))
            assert torch.equal(transition[0], obs) and dropped == []
            buffer.add(*transition)
            ends += [(step, n) for _, n, _ in finished]
        ended_rows = torch.nonzero(buffer.ended[:buffer.size]).flatten()
        assert len(ended_rows) == len(ends) > 0
        row = int(ended_rows[0])
        assert buffer.terminated[row] == (task is CartPole)
        before = buffer.gather(torch.tensor([row - 2]))  # two steps before an end: the sum stops there
        assert before.discount.item() == 0.5 ** 2
        assert before.reward.item() == pytest.approx(buffer.reward[row - 2] + 0.5 * buffer.reward[row])
        assert torch.equal(before.next_obs[0], buffer.next_obs[row])
        assert before.terminated.item() == buffer.terminated[row]


def test_a_many_env_run_trains_evaluates_and_resumes_exactly(tiny, tmp_path):
    common = dict(env="pathwise/CartPoleContinuous-v0", vector_mode="torch", num_envs=4, total_steps=800,
                  learning_starts=200, eval_episodes=2, sac={"n_step": 3})
    straight = train(tiny(run_dir=str(tmp_path / "straight"), **common))
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 400}))
    resumed = resume(tmp_path / "split", {"total_steps": 800})
    assert resumed.env_steps == straight.env_steps == 800
    a, b = (load_checkpoint(s.checkpoint) for s in (straight, resumed))
    for part in ("actor", "critic"):
        assert all(torch.equal(a["agent_state"][part][k], b["agent_state"][part][k]) for k in a["agent_state"][part])
    assert all(torch.equal(a["buffer"][k], b["buffer"][k]) for k in ("obs", "action", "next_obs", "reward", "ended"))
    assert resumed.eval_return_mean == straight.eval_return_mean


def _episode_ends(collector, steps, zeros):
    """Each sub-env's episode ends over `steps` steps of `zeros`: {env: [step, ...]}, and whether any terminated."""
    ends, terminated = {}, False
    collector.start()
    for step in range(steps):
        transition, _, _ = collector.step(zeros)
        terminated |= bool(np.asarray(transition[4]).any())
        for env in np.flatnonzero(np.asarray(transition[5])):
            ends.setdefault(int(env), []).append(step)
    return ends, terminated


@pytest.mark.parametrize("mode", ["sync", "torch"])
def test_staggered_first_episodes_end_apart_then_run_the_whole_limit(mode):
    if mode == "sync":
        collector = Collector(make_vector_env("Pendulum-v1", 6), seed=0, stagger=200)
        zeros = np.zeros((6, 1), np.float32)
    else:
        collector = BatchedCollector(Pendulum(6), seed=0, stagger=True)
        zeros = torch.zeros(6, 1)
    ends, terminated = _episode_ends(collector, 450, zeros)
    first = [ends[env][0] for env in range(6)]
    assert not terminated and len(set(first)) > 1 and all(0 <= step < 200 for step in first)
    for env in range(6):  # the later episodes run the whole 200 steps
        assert np.diff(ends[env]).tolist() == [200] * (len(ends[env]) - 1) and len(ends[env]) >= 2
    plain, _ = _episode_ends(Collector(make_vector_env("Pendulum-v1", 6), seed=0), 250, np.zeros((6, 1), np.float32))
    assert all(plain[env] == [199] for env in range(6))  # without it, all at the limit


@pytest.mark.parametrize("mode", ["sync", "torch"])
def test_a_staggered_run_resumes_exactly(tiny, tmp_path, mode):
    common = dict(vector_mode=mode, num_envs=3, total_steps=600, learning_starts=150, stagger_episodes=True)
    straight = train(tiny(run_dir=str(tmp_path / "straight"), **common))
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 240}))  # first episodes in flight
    resumed = resume(tmp_path / "split", {"total_steps": 600})
    a, b = (load_checkpoint(s.checkpoint) for s in (straight, resumed))
    assert all(torch.equal(a["buffer"][k], b["buffer"][k]) for k in ("obs", "action", "next_obs", "reward", "ended"))
    assert 0 < int(a["buffer"]["ended"].sum()) and resumed.eval_return_mean == straight.eval_return_mean


@pytest.mark.slow
def test_a_many_env_run_learns_pendulum_on_the_torch_native_task(tiny):
    # 8 envs and 8 updates a step: an update per transition, as one env with one update a step
    summary = train(tiny(vector_mode="torch", num_envs=8, total_steps=8_000, learning_starts=1_000, batch_size=128,
                         updates_per_step=8, eval_episodes=5, sac={"hidden_sizes": (64, 64)}))
    assert summary.eval_return_mean >= -300  # random actions score about -1,200


def test_batched_modes_refuse_what_they_cannot_do(tiny):
    with pytest.raises(UserError, match="no task 'HalfCheetah-v5'"):
        make_batched_env("HalfCheetah-v5", 2, "torch", seed=0)
    with pytest.raises(UserError, match="drop needs --vector-mode sync or async"):
        train(tiny(vector_mode="torch", on_nonfinite="drop"))


@needs_envpool
def test_envpool_steps_as_gymnasiums_env_and_drops_its_reset_step():
    # Hopper's observation leaves out the x position, which its dynamics do not depend on: Gymnasium's env can be
    # put in the state each of EnvPool's observations shows, stepped with the same action, and compared.
    pool = make_batched_env("Hopper-v5", 2, "envpool", seed=0)
    gym_env = gym.make("Hopper-v5").unwrapped
    gym_env.reset(seed=0)
    obs, rng, ends = pool.reset(), np.random.default_rng(0), 0
    for _ in range(300):
        action = torch.as_tensor(rng.uniform(-1, 1, (2, 3)), dtype=torch.float32)
        out = pool.step(action)
        gym_env.set_state(np.concatenate([[0.0], obs[0, :5].double().numpy()]), obs[0, 5:].double().numpy())
        gym_obs, reward, terminated, _, _ = gym_env.step(action[0].double().numpy())
        np.testing.assert_allclose(out.final_obs[0].numpy(), gym_obs, atol=1e-5)
        assert out.reward[0].item() == pytest.approx(reward, abs=1e-4) and bool(out.terminated[0]) == terminated
        if terminated:  # the next observation is the new episode's first: Hopper stands at 1.25, near still
            ends += 1
            assert out.next_obs[0, 0] == pytest.approx(1.25, abs=0.01) and out.next_obs[0, 5:].abs().max() < 0.01
        else:
            assert torch.equal(out.next_obs[0], out.final_obs[0])
        obs = out.next_obs
    assert ends >= 2
    pool.close()


@needs_envpool
def test_envpool_truncates_at_the_time_limit_in_the_same_step():
    pool = make_batched_env("HalfCheetah-v5", 2, "envpool", seed=0)
    pool.reset()
    for step in range(1, 1001):
        out = pool.step(torch.zeros(2, 6))
        assert out.truncated.all() == (step == 1000) and not out.terminated.any()
    assert not torch.equal(out.next_obs, out.final_obs)
    assert not pool.step(torch.zeros(2, 6)).truncated.any()  # the new episodes go on
    pool.close()


@needs_envpool
def test_an_envpool_run_trains_and_resumes_with_its_episodes_begun_anew(tiny, tmp_path, capsys):
    common = dict(env="InvertedPendulum-v5", vector_mode="envpool", num_envs=2, learning_starts=100)
    train(tiny(total_steps=300, **common))
    summary = resume(tmp_path / "run", {"total_steps": 500})
    assert summary.env_steps == 500
    assert "cannot put its 2 episodes in flight back" in capsys.readouterr().err
    with pytest.raises(UserError, match="EnvPool has no task 'pathwise/CartPoleContinuous-v0'"):
        train(tiny(run_dir=str(tmp_path / "other"), **{**common, "env": "pathwise/CartPoleContinuous-v0"}))


@needs_envpool
def test_envpool_refuses_to_stagger_episodes(tiny):
    with pytest.raises(UserError, match="envpool cannot start an episode part-way.*pass --no-stagger-episodes"):
        train(tiny(env="HalfCheetah-v5", vector_mode="envpool", num_envs=2, stagger_episodes=True))


@needs_envpool
def test_envpool_faults_become_one_sentence():
    from pathwise.errors import EnvFault, NonFinite
    pool = make_batched_env("HalfCheetah-v5", 2, "envpool", seed=0)
    with pytest.raises(NonFinite, match=r"non-finite observation \(nan\) at a reset"):
        pool._checked(np.array([[0.0, np.nan]]), "at a reset")
    with np.errstate(over="ignore"):  # a sum that overflows is not a non-finite entry
        assert torch.equal(pool._checked(np.full((1, 2), 1e308), ""), torch.full((1, 2), float("inf")))

    def crash(*args):
        raise RuntimeError("simulator exploded\nmore lines")
    with pytest.raises(EnvFault, match=r"raised RuntimeError in step: simulator exploded$"):
        pool._call("step", crash)
    pool.close()


@pytest.mark.skipif(importlib.util.find_spec("mjlab") is not None, reason="mjlab is installed: its tasks load")
def test_an_mjlab_task_without_mjlab_says_how_to_install_it(tiny):
    with pytest.raises(UserError, match=r"the mjlab/ tasks need mjlab, which is not installed.*pathwise-rl\[mjlab\]"):
        train(tiny(env="mjlab/Cartpole-Swingup"))
    with pytest.raises(UserError, match=r"the mjlab/ tasks need mjlab, which is not installed"):
        make_batched_env("mjlab/Cartpole-Swingup", 2, "mjlab", seed=0)
