import numpy as np
import torch

from agents.replay_buffer import ReplayBuffer


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
