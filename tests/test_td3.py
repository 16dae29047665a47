"""TD3: one-update invariants, exploration, and the agent running through the shared trainer and CLI."""

import torch

from pathwise.agents.batch import Batch
from pathwise.agents.td3 import TD3, TD3Config, critic_loss

OBS, ACT, B = 3, 2, 64


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, OBS, generator=g), torch.rand(B, ACT, generator=g) * 2 - 1,
                 torch.randn(B, generator=g), torch.randn(B, OBS, generator=g), torch.zeros(B),
                 torch.full((B,), 0.99))


def make_agent(**kw):
    torch.manual_seed(0)
    return TD3(OBS, ACT, TD3Config(hidden_sizes=(32, 32), **kw), torch.device("cpu"))


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_actor_and_targets_move_only_every_policy_delay_updates():
    agent = make_agent(policy_delay=3, tau=0.1)
    snapshots = []
    for step in range(6):
        critic, actor = flat(agent.critic).clone(), flat(agent.actor).clone()
        targets = flat(agent.actor_target).clone(), flat(agent.critic_target).clone()
        info = agent.update(make_batch(step))
        assert torch.isfinite(info["critic_loss"]) and not torch.equal(flat(agent.critic), critic)
        moved = not torch.equal(flat(agent.actor), actor)
        targets_moved = not torch.equal(flat(agent.actor_target), targets[0])
        snapshots.append((moved, targets_moved))
        if moved:  # the targets take a tau step towards the networks as they are after the update
            expected = targets[1] + 0.1 * (flat(agent.critic) - targets[1])
            torch.testing.assert_close(flat(agent.critic_target), expected)
    assert snapshots == [(False, False), (False, False), (True, True)] * 2


def test_target_policy_smoothing_noise_is_clipped_and_actions_stay_in_bounds():
    agent = make_agent()
    batch = make_batch()
    seen = {}

    def recording_target(obs, action):
        seen["next_action"] = action
        return agent.critic_target(obs, action)

    critic_loss(batch, agent.critic, agent.actor_target, recording_target, TD3Config(policy_noise=100.0,
                                                                                    noise_clip=0.3))
    next_action = seen["next_action"]
    mode = agent.actor_target(batch.next_obs).mode
    assert next_action.abs().max() <= 1.0
    assert ((next_action - mode).abs() <= 0.3 + 1e-6).all()
    assert ((next_action - mode).abs() > 0.29).float().mean() > 0.5  # huge noise: most draws hit the clip


def test_the_actor_learns_through_its_deterministic_action_not_the_critic_weights():
    agent = make_agent(policy_delay=1)
    critic_before = flat(agent.critic).clone()
    agent.critic_optimizer.step = lambda: None  # freeze the critic: only the actor's step can change things
    agent.update(make_batch())
    assert torch.equal(flat(agent.critic), critic_before)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())


def test_exploration_adds_bounded_noise_and_deterministic_acting_does_not():
    agent = make_agent(exploration_noise=0.5)
    obs = torch.randn(256, OBS)
    mode = agent.act(obs, deterministic=True)
    sampled = agent.act(obs)
    assert torch.equal(mode, agent.actor(obs).mode) and sampled.abs().max() <= 1.0
    assert 0.3 < (sampled - mode).std() < 0.6


def test_td3_trains_saves_loads_and_resumes_through_the_shared_trainer(tiny, tmp_path):
    from pathwise import load_policy
    from pathwise.checkpoint import load_checkpoint
    from pathwise.run import resume, train

    summary = train(tiny(agent=TD3Config()))
    payload = load_checkpoint(summary.checkpoint)
    assert payload["agent"] == "td3" and payload["agent_state"]["updates"] == 200
    policy = load_policy(summary.checkpoint)
    assert policy.act(torch.zeros(3).numpy()).shape == (1,)
    assert resume(tmp_path / "run", {"total_steps": 400}).env_steps == 400
