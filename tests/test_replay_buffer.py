import numpy as np
import pytest
import torch

from pathwise.replay_buffer import ReplayBuffer


def add(buffer, start, n):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(2, 1)
    buffer.add(obs, np.zeros((n, 1)), obs[:, 0], obs + 1, np.zeros(n, bool))


def test_wraps_around_and_keeps_the_newest_transitions():
    buffer = ReplayBuffer(capacity=5, obs_dim=2, act_dim=1, device=torch.device("cpu"))
    add(buffer, 0, 3)
    assert len(buffer) == 3
    add(buffer, 3, 4)  # 7 transitions into 5 slots: 0 and 1 are overwritten
    assert len(buffer) == 5 and buffer.pos == 2
    assert sorted(buffer.reward.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_sample_draws_stored_transitions_with_consistent_fields():
    buffer = ReplayBuffer(capacity=100, obs_dim=2, act_dim=1, device=torch.device("cpu"), seed=0)
    add(buffer, 0, 10)
    batch = buffer.sample(64)
    assert batch.obs.shape == (64, 2) and batch.action.shape == (64, 1) and batch.reward.shape == (64,)
    assert batch.obs.dtype == torch.float32 and batch.terminated.dtype == torch.float32
    assert set(batch.reward.tolist()) <= set(range(10))
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)
    torch.testing.assert_close(batch.obs[:, 0], batch.reward)


def test_stores_terminated_as_float_and_sampling_is_seeded():
    def filled(seed):
        b = ReplayBuffer(capacity=10, obs_dim=1, act_dim=1, device=torch.device("cpu"), seed=seed)
        b.add(np.zeros((4, 1)), np.zeros((4, 1)), np.zeros(4), np.zeros((4, 1)), np.array([1, 0, 1, 0], bool))
        return b
    assert filled(0).terminated[:4].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert torch.equal(filled(3).sample(32).terminated, filled(3).sample(32).terminated)


def reference_returns(steps, num_envs, n, gamma, capacity):
    """Brute force over the history of writes: for each stored row, walk its sub-env's later transitions in time
    order. `steps`: a list of (reward, terminated, ended) arrays of length num_envs, one per env step."""
    history = [(t, i, float(r[i]), bool(term[i]), bool(end[i])) for t, (r, term, end) in enumerate(steps)
               for i in range(num_envs)]  # write order
    kept = history[-capacity:]  # what the buffer still holds, oldest first
    out = {}
    for age, (t, i, *_) in enumerate(kept):
        total, k, last = 0.0, 0, None
        for t2, i2, r2, term2, end2 in kept[age:]:
            if i2 != i or t2 < t:
                continue
            total += gamma ** k * r2
            k, last = k + 1, (t2, term2)
            if end2 or k == n:
                break
        write = len(history) - len(kept) + age
        out[write % capacity] = (total, gamma ** k, float(last[1]), last[0] * num_envs + i)
    return out


def filled_buffer(num_envs, n, capacity, steps_count, seed=0, gamma=0.9):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(capacity=capacity, obs_dim=2, act_dim=1, device=torch.device("cpu"), gamma=gamma,
                          n_step=n, num_envs=num_envs)
    steps = []
    for t in range(steps_count):
        reward = rng.normal(size=num_envs).astype(np.float32)
        terminated = rng.random(num_envs) < 0.1
        truncated = ~terminated & (rng.random(num_envs) < 0.1)
        ended = terminated | truncated
        # obs and next_obs carry the write index, so the test can tell which transition a row came from.
        index = np.arange(t * num_envs, (t + 1) * num_envs, dtype=np.float32)[:, None].repeat(2, 1)
        buffer.add(index, np.zeros((num_envs, 1)), reward, index, terminated, ended)
        steps.append((reward, terminated, ended))
    return buffer, steps


@pytest.mark.parametrize("num_envs, n, capacity, steps_count", [
    (1, 3, 100, 40),  # not yet full
    (1, 5, 17, 40),  # wrapped around: sums run across the end of the storage, never into overwritten rows
    (3, 3, 100, 20),  # sub-envs interleaved
    (3, 4, 20, 23),  # interleaved and wrapped, the capacity not a multiple of the sub-envs
])
def test_n_step_returns_match_a_walk_through_each_sub_envs_history(num_envs, n, capacity, steps_count):
    gamma = 0.9
    buffer, steps = filled_buffer(num_envs, n, capacity, steps_count, gamma=gamma)
    expected = reference_returns(steps, num_envs, n, gamma, capacity)
    rows = torch.arange(len(buffer))
    batch = buffer.gather(rows)
    for row in rows.tolist():
        reward, discount, terminated, last_write = expected[row]
        assert batch.reward[row].item() == pytest.approx(reward, abs=1e-5)
        assert batch.discount[row].item() == pytest.approx(discount, rel=1e-6)
        assert batch.terminated[row].item() == terminated
        assert batch.next_obs[row, 0].item() == last_write  # the bootstrap is the last summed transition's
        assert batch.obs[row, 0].item() == buffer.obs[row, 0].item()
    # The cases above include every way a sum stops: a full n, a termination, a truncation, the newest row.
    assert {k for k in range(1, n + 1)} <= set(torch.round(torch.log(batch.discount) / np.log(gamma)).int().tolist())


@pytest.mark.parametrize("n", [1, 3])
def test_a_new_gamma_discounts_every_later_batch(n):
    buffer, steps = filled_buffer(2, n, 40, 30, gamma=0.9)
    buffer.sample(8)  # the discounts at 0.9, made and kept
    buffer.set_gamma(0.8)  # as pathwise.schedule.discount sets it
    expected = reference_returns(steps, 2, n, 0.8, 40)
    rows = torch.arange(len(buffer))
    batch = buffer.gather(rows)
    for row in rows.tolist():
        assert batch.reward[row].item() == pytest.approx(expected[row][0], abs=1e-5)
        assert batch.discount[row].item() == pytest.approx(expected[row][1], rel=1e-6)
    assert torch.all(buffer.sample(8).discount <= 0.8 + 1e-6)


def test_n_step_stops_at_a_truncation_and_bootstraps_from_the_true_final_observation():
    buffer = ReplayBuffer(capacity=10, obs_dim=1, act_dim=1, device=torch.device("cpu"), gamma=0.5, n_step=3)
    for t, (terminated, ended) in enumerate([(0, 0), (0, 1), (0, 0), (1, 1), (0, 0)]):
        buffer.add(np.array([[t]]), np.zeros((1, 1)), np.array([1.0]), np.array([[t + 100]]), np.array([terminated]),
                   np.array([ended]))
    batch = buffer.gather(torch.arange(5))
    # Row 0: steps 0 and 1, then the time limit: bootstrap from step 1's true next observation, discounted twice.
    assert batch.reward.tolist() == [1.5, 1.0, 1.5, 1.0, 1.0]
    assert batch.next_obs[:, 0].tolist() == [101, 101, 103, 103, 104]
    assert batch.discount.tolist() == [0.25, 0.5, 0.25, 0.5, 0.5]
    assert batch.terminated.tolist() == [0, 0, 1, 1, 0]  # a termination stops the bootstrap, a truncation not


def test_one_step_sampling_is_unchanged_by_the_n_step_machinery():
    one, _ = filled_buffer(2, 1, 50, 30, seed=1)
    batch = one.sample(64)
    idx = torch.randint(0, len(one), (64,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.reward, one.reward[idx])
    torch.testing.assert_close(batch.next_obs, one.next_obs[idx])
    assert torch.all(batch.discount == torch.tensor(0.9))


def test_ended_flags_are_saved_and_a_buffer_saved_without_them_falls_back_to_one_step_returns():
    buffer, _ = filled_buffer(2, 3, 50, 30, seed=2)
    state = buffer.state_dict()
    restored = ReplayBuffer(capacity=50, obs_dim=2, act_dim=1, device=torch.device("cpu"), gamma=0.9, n_step=3,
                            num_envs=2)
    restored.load_state_dict(state)
    rows = torch.arange(50)
    assert all(torch.equal(a, b) for a, b in zip(buffer.gather(rows), restored.gather(rows)))
    del state["ended"]
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.gather(rows).reward, buffer.reward[:50])


def test_rows_not_yet_written_never_reach_an_n_step_sum():
    buffer = ReplayBuffer(capacity=8, obs_dim=1, act_dim=1, device=torch.device("cpu"), gamma=0.5, n_step=4)
    for store in (buffer.reward, buffer.ended, buffer.terminated, buffer.next_obs):
        store.fill_(float("nan"))  # what an untouched page may hold
    buffer.add(np.zeros((2, 1)), np.zeros((2, 1)), np.array([1.0, 2.0]), np.zeros((2, 1)), np.zeros(2), np.zeros(2))
    batch = buffer.gather(torch.arange(2))
    assert batch.reward.tolist() == [2.0, 2.0] and batch.discount.tolist() == [0.25, 0.5]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_buffer_stores_and_gathers_what_a_cpu_buffer_does():
    # On a GPU a step is one pinned copy into the packed rows, and a batch one gather; here also across the end.
    buffers = [ReplayBuffer(capacity=7, obs_dim=2, act_dim=3, device=torch.device(device), num_envs=2)
               for device in ("cpu", "cuda")]
    for step in range(6):
        obs = np.random.default_rng(step).normal(size=(2, 2)).astype(np.float32)
        transition = (obs, np.full((2, 3), step), np.array([step, -step]), obs + 1, np.array([False, step == 3]),
                      np.array([step == 2, step == 3]))
        for buffer in buffers:
            buffer.add(*transition)
    cpu, gpu = buffers
    assert (gpu.pos, gpu.size) == (cpu.pos, cpu.size) == (5, 7)
    rows = torch.arange(7)
    for a, b in zip(cpu.gather(rows), gpu.gather(rows.cuda())):
        torch.testing.assert_close(b.cpu(), a)


def test_episodes_ended_from_outside_stop_n_step_sums_at_their_newest_transition():
    # Two sub-envs; a resume that cannot put sub-env 1's episode back begins it anew: its sums must not cross.
    buffer = ReplayBuffer(capacity=20, obs_dim=1, act_dim=1, device=torch.device("cpu"), gamma=0.5, n_step=3,
                          num_envs=2)
    for t in range(2):
        buffer.add(np.full((2, 1), t), np.zeros((2, 1)), np.ones(2), np.full((2, 1), t + 1), np.zeros(2, bool))
    buffer.end_episodes(np.array([False, True]))
    buffer.add(np.full((2, 1), 9), np.zeros((2, 1)), np.ones(2), np.full((2, 1), 10), np.zeros(2, bool))
    batch = buffer.gather(torch.tensor([0, 1]))  # t = 0 of each sub-env
    assert batch.reward.tolist() == [1.75, 1.5]  # three rewards for sub-env 0, two for sub-env 1
    assert batch.next_obs[:, 0].tolist() == [10.0, 2.0] and batch.terminated.tolist() == [0.0, 0.0]
