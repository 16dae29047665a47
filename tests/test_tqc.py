"""TQC's math: the quantile Huber loss, the truncated pooled target, the actor's mean over quantiles."""

import itertools

import pytest
import torch

from pathwise.agents.batch import Batch
from pathwise.agents.tqc import TQCConfig, quantile_huber_loss, target_atoms

OBS, ACT, B = 3, 2, 16


def make_batch(seed=0, terminated=None, discount=0.9):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, OBS, generator=g), torch.rand(B, ACT, generator=g) * 2 - 1,
                 torch.randn(B, generator=g), torch.randn(B, OBS, generator=g),
                 torch.zeros(B) if terminated is None else terminated, torch.full((B,), discount))


def make_agent(**kw):
    torch.manual_seed(0)
    return TQCConfig(hidden_sizes=(16, 16), num_quantiles=5, **kw).make_agent(OBS, ACT, torch.device("cpu"))


def test_quantile_huber_loss_matches_its_definition_term_by_term():
    g = torch.Generator().manual_seed(1)
    quantiles, target = torch.randn(2, 3, 4, generator=g) * 2, torch.randn(3, 6, generator=g) * 2
    terms = []
    for e, b, i, j in itertools.product(range(2), range(3), range(4), range(6)):
        u = float(target[b, j] - quantiles[e, b, i])
        tau = (i + 0.5) / 4
        huber = 0.5 * u * u if abs(u) <= 1 else abs(u) - 0.5
        terms.append(abs(tau - (1.0 if u < 0 else 0.0)) * huber)
    assert quantile_huber_loss(quantiles, target).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_the_loss_is_least_where_the_quantiles_sit_at_the_targets_quantiles():
    # A return uniform on [-10, 10], wide against the Huber threshold of 1: its quantiles at (i + 0.5) / 5.
    target = torch.linspace(-10, 10, 1001)[None].expand(B, -1)
    right = torch.tensor([-8.0, -4.0, 0.0, 4.0, 8.0])
    for wrong in (right + 1.0, right * 0.5, torch.zeros(5)):
        assert quantile_huber_loss(right.expand(2, B, 5), target) < quantile_huber_loss(wrong.expand(2, B, 5),
                                                                                        target)


def test_the_target_pools_every_target_critics_quantiles_and_drops_the_top_ones():
    agent = make_agent(alpha=0.5, drop_per_critic=2)
    # Target critics whose quantiles are fixed: member 0 predicts 0..4, member 1 predicts 10..14.
    atoms = torch.stack([torch.arange(5.0), torch.arange(10.0, 15.0)])  # (E, N)
    with torch.no_grad():
        last = agent.critic_target.layers[-1]
        last.weight.zero_()
        last.bias.copy_(atoms[:, None, :])
    terminated = torch.tensor([1.0, 0.0] * (B // 2))
    batch = make_batch(terminated=terminated)
    torch.manual_seed(5)
    with torch.no_grad():
        _, next_log_prob = agent.actor(batch.next_obs).rsample_and_log_prob()
    torch.manual_seed(5)
    target = target_atoms(batch, agent.actor, agent.critic_target, agent.alpha, agent.config.drop_per_critic)
    # 10 pooled atoms less the top 2 x 2: 0..4 and 10, each a soft value (less alpha * log pi), discounted.
    kept = torch.tensor([0.0, 1, 2, 3, 4, 10])
    expected = batch.reward[:, None] + 0.9 * (1 - terminated)[:, None] * (kept - 0.5 * next_log_prob[:, None])
    torch.testing.assert_close(target, expected)


def test_the_actor_values_an_action_by_the_mean_of_every_critics_quantiles():
    agent = make_agent()
    obs, action = torch.randn(B, OBS), torch.rand(B, ACT) * 2 - 1
    z = agent.critic(obs, action)
    assert z.shape == (2, B, 5)
    torch.testing.assert_close(agent._frozen_critic(obs, action), z.mean(dim=(0, 2))[None])


def test_an_update_moves_the_critics_actor_and_temperature_and_keeps_targets_close():
    agent = make_agent()
    before = {n: p.clone() for n, p in agent.critic.named_parameters()}
    actor_before = [p.clone() for p in agent.actor.parameters()]
    info = agent.update(make_batch())
    assert all(torch.isfinite(v).all() for v in info.values())
    assert all(not torch.equal(before[n], p) for n, p in agent.critic.named_parameters())
    assert all(not torch.equal(a, p) for a, p in zip(actor_before, agent.actor.parameters()))
    assert agent.alpha != 1.0


def test_drop_per_critic_must_leave_atoms():
    with pytest.raises(ValueError, match="drop_per_critic must lie in"):
        TQCConfig(num_quantiles=5, drop_per_critic=5)
