"""Resets of the networks (--reset-every, --reset-keep): the math of a reset and its place in a run."""

import pytest
import torch

from pathwise.agents.batch import Batch
from pathwise.agents.crossq import CrossQConfig
from pathwise.agents.sac import SACConfig
from pathwise.agents.scaffold import optimizers, reset_
from pathwise.run import build_trainer

CPU = torch.device("cpu")


def make_batch(seed):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(64, 3, generator=g), torch.rand(64, 1, generator=g) * 2 - 1, torch.randn(64, generator=g),
                 torch.randn(64, 3, generator=g), torch.zeros(64), torch.full((64,), 0.99))


def adam_state(agent, param):
    (state,) = [o.state[param] for o in optimizers(agent) if param in o.state]
    return {k: v.clone() for k, v in state.items()}


@pytest.mark.parametrize("config", [SACConfig(hidden_sizes=(16, 16)),
                                    CrossQConfig(actor_hidden_sizes=(16,), critic_hidden_sizes=(16,))])
@pytest.mark.parametrize("keep", [0.0, 0.8])
def test_a_reset_moves_every_network_towards_a_fresh_one_and_keeps_the_temperature(config, keep):
    torch.manual_seed(0)
    agent = config.make_agent(3, 1, CPU)
    for _ in range(3):
        agent.update(make_batch(0))
    fresh = config.make_agent(3, 1, CPU)
    before = {name: {k: v.clone() for k, v in getattr(agent, name).state_dict().items()}
              for name in ("actor", "critic")}
    log_alpha, alpha_state = agent.log_alpha.detach().clone(), adam_state(agent, agent.log_alpha)
    reset_(agent, fresh, keep)
    for name, old in before.items():
        new, target = getattr(agent, name).state_dict(), getattr(fresh, name).state_dict()
        for key, value in old.items():
            if value.is_floating_point():
                torch.testing.assert_close(new[key], keep * value + (1 - keep) * target[key])
            elif keep == 0.0:
                assert torch.equal(new[key], target[key])  # e.g. batch renorm's step counts start again
            else:
                assert torch.equal(new[key], value)
    if hasattr(agent, "critic_target"):
        close = [torch.allclose(p, f) for p, f in zip(agent.critic_target.parameters(),
                                                       fresh.critic_target.parameters())]
        assert all(close) if keep == 0.0 else not any(close)
    # The networks' Adam moments and step counts are a fresh Adam's (zero, in place); the temperature's value and
    # moments stay.
    for p in [*agent.actor.parameters(), *agent.critic.parameters()]:
        assert all(not v.any() for v in adam_state(agent, p).values())
    assert torch.equal(agent.log_alpha, log_alpha)
    assert all(torch.equal(v, alpha_state[k]) for k, v in adam_state(agent, agent.log_alpha).items())
    info = agent.update(make_batch(1))  # and it trains on
    assert torch.isfinite(info["critic_loss"])


def test_a_run_resets_at_each_multiple_of_reset_every_and_only_then(tiny, monkeypatch):
    trainer = build_trainer(tiny(total_steps=500, reset_every=200, num_envs=2))
    at = []
    monkeypatch.setattr(trainer, "reset_networks", lambda: at.append(trainer.env_steps))
    trainer.run()
    trainer.close()
    assert at == [198, 398]  # in the steps that reach 200 and 400 (two envs: from 198 and 398), after acting


def test_reset_settings_are_checked(tiny):
    with pytest.raises(ValueError, match="reset_keep must lie in"):
        tiny(reset_keep=1.0)
    with pytest.raises(ValueError, match="reset_every must be zero or positive"):
        tiny(reset_every=-5)
