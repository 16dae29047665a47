import io

import pytest
import torch

from pathwise.agents.batch import Batch
from pathwise.agents.sac import SAC, SACConfig, actor_loss, critic_loss, temperature_loss

OBS, ACT, B = 3, 2, 64


def make_batch(seed=0, terminated=None, discount=0.99):
    g = torch.Generator().manual_seed(seed)
    term = torch.zeros(B) if terminated is None else terminated
    return Batch(torch.randn(B, OBS, generator=g), torch.rand(B, ACT, generator=g) * 2 - 1,
                 torch.randn(B, generator=g), torch.randn(B, OBS, generator=g), term, torch.full((B,), discount))


def make_agent(**kw):
    torch.manual_seed(0)
    return SAC(OBS, ACT, SACConfig(hidden_sizes=(32, 32), **kw), torch.device("cpu"))


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_one_update_gives_finite_losses_and_moves_actor_and_critics():
    agent = make_agent()
    actor0, critic0 = flat(agent.actor).clone(), flat(agent.critic).clone()
    info = agent.update(make_batch())
    for key in ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean", "alpha_loss", "log_std"):
        assert torch.isfinite(info[key]) and not info[key].requires_grad, key
    assert not torch.equal(flat(agent.actor), actor0)
    assert not torch.equal(flat(agent.critic), critic0)


def test_grad_norms_are_those_of_the_gradients_the_last_update_left():
    agent = make_agent()
    assert agent.grad_norms() == {}  # no backward yet
    agent.update(make_batch())
    norms = agent.grad_norms()
    for name, module in (("critic", agent.critic), ("actor", agent.actor)):
        expected = torch.cat([p.grad.flatten() for p in module.parameters()]).norm()
        assert expected > 0 and torch.allclose(norms[f"{name}_grad_norm"], expected)


@pytest.mark.parametrize("tau", [0.0, 0.005, 1.0])
def test_target_critics_move_by_tau_towards_the_critics(tau):
    agent = make_agent(tau=tau)
    target0 = flat(agent.critic_target).clone()
    agent.update(make_batch())
    expected = target0 + tau * (flat(agent.critic) - target0)
    torch.testing.assert_close(flat(agent.critic_target), expected)
    if tau == 0.0:
        assert torch.equal(flat(agent.critic_target), target0)
    if tau == 1.0:
        torch.testing.assert_close(flat(agent.critic_target), flat(agent.critic))


def test_actor_loss_reaches_the_actor_through_the_action_but_not_the_critic_weights():
    agent = make_agent()
    obs = make_batch().obs
    loss, _, _ = actor_loss(obs, agent.actor, agent._frozen_critic, agent.alpha)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    assert all(p.grad is None for p in agent.critic.parameters())
    # The same loss through the live critic would have filled the critic's gradients.
    loss, _, _ = actor_loss(obs, agent.actor, agent.critic, agent.alpha)
    loss.backward()
    assert all(p.grad is not None for p in agent.critic.parameters())


@pytest.mark.parametrize("target_entropy, direction", [(-100.0, -1), (100.0, +1)])
def test_temperature_moves_towards_the_target_entropy(target_entropy, direction):
    agent = make_agent(target_entropy=target_entropy, init_alpha=0.5)
    before = agent.alpha.item()
    agent.update(make_batch())
    assert (agent.alpha.item() - before) * direction > 0


def test_default_target_entropy_is_minus_action_dim_and_fixed_alpha_stays_fixed():
    assert make_agent().target_entropy == -ACT
    agent = make_agent(alpha=0.1)
    agent.update(make_batch())
    assert agent.alpha.item() == pytest.approx(0.1) and not agent.log_alpha.requires_grad
    assert make_agent(alpha=0.0).update(make_batch())["alpha"].item() == 0.0


def test_target_entropy_per_dim_scales_with_the_action_dim_and_an_explicit_target_wins():
    assert make_agent(target_entropy_per_dim=-0.5).target_entropy == -0.5 * ACT
    assert make_agent(target_entropy_per_dim=-0.5, target_entropy=-7.0).target_entropy == -7.0


def constant_target_critics(agent, value):
    with torch.no_grad():
        for layer in agent.critic_target.layers:
            layer.weight.zero_()
            layer.bias.zero_()
        agent.critic_target.layers[-1].bias.fill_(value)


def test_bootstrapping_stops_only_at_terminal_states():
    agent = make_agent(alpha=0.0)
    constant_target_critics(agent, 3.0)
    terminated = torch.tensor([1.0, 0.0] * (B // 2))
    batch = make_batch(terminated=terminated, discount=0.5)

    def zero_critic(obs, action):
        return torch.zeros(2, len(obs))

    loss, _ = critic_loss(batch, agent.actor, zero_critic, agent.critic_target, agent.alpha)
    # With Q = 0 the loss is 0.5 * E * mean(q_target^2), and q_target = r + 0.5 * 3 unless terminated.
    q_target = batch.reward + 0.5 * 3.0 * (1 - terminated)
    torch.testing.assert_close(loss, 0.5 * 2 * q_target.square().mean())


def test_the_target_subtracts_alpha_times_the_next_log_prob():
    agent = make_agent(alpha=0.5)
    constant_target_critics(agent, 3.0)
    batch = make_batch(discount=0.9)
    torch.manual_seed(11)
    with torch.no_grad():
        _, next_log_prob = agent.actor(batch.next_obs).rsample_and_log_prob()
    torch.manual_seed(11)
    loss, _ = critic_loss(batch, agent.actor, lambda o, a: torch.zeros(2, len(o)), agent.critic_target,
                          agent.alpha)
    q_target = batch.reward + 0.9 * (3.0 - 0.5 * next_log_prob)  # the soft value: entropy adds to the return
    torch.testing.assert_close(loss, q_target.square().mean())


def test_state_dict_round_trip_restores_identical_behaviour():
    agent = make_agent()
    agent.update(make_batch(0))
    file = io.BytesIO()
    torch.save(agent.state_dict(), file)
    file.seek(0)
    clone = make_agent(init_alpha=0.3)
    clone.load_state_dict(torch.load(file, weights_only=True))
    torch.manual_seed(5)
    a = agent.update(make_batch(1))
    torch.manual_seed(5)
    b = clone.update(make_batch(1))
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_one_backward_of_the_summed_losses_gives_each_part_its_own_gradient():
    agent = make_agent()
    batch = make_batch()
    torch.manual_seed(3)
    agent.update(batch)  # fills .grad with the summed loss's gradients (taken before the step)
    summed = {name: p.grad.clone() for name, p in agent.critic.named_parameters()}
    summed_actor = {name: p.grad.clone() for name, p in agent.actor.named_parameters()}
    alpha_grad = agent.log_alpha.grad.clone()

    reference = make_agent()  # the same initial parameters; each loss backpropagated alone
    torch.manual_seed(3)
    alpha = reference.alpha
    loss_q, _ = critic_loss(batch, reference.actor, reference.critic, reference.critic_target, alpha)
    loss_q.backward()
    assert all(torch.allclose(p.grad, summed[n], atol=1e-6) for n, p in reference.critic.named_parameters())
    assert all(p.grad is None for p in reference.actor.parameters())
    loss_pi, log_prob, _ = actor_loss(batch.obs, reference.actor, reference._frozen_critic, alpha)
    loss_pi.backward()
    assert all(torch.allclose(p.grad, summed_actor[n], atol=1e-6) for n, p in reference.actor.named_parameters())
    temperature_loss(reference.log_alpha, log_prob, reference.target_entropy).backward()
    torch.testing.assert_close(reference.log_alpha.grad, alpha_grad)


def test_both_temperature_losses_push_alpha_the_same_way_and_only_one_scales_with_alpha():
    log_prob = torch.tensor([0.5, 1.5])  # entropy -1, below the target of 0: alpha must grow
    grads = {}
    for form in ("alpha", "log_alpha"):
        log_alpha = torch.tensor(0.1).log().requires_grad_()
        temperature_loss(log_alpha, log_prob, 0.0, form).backward()
        grads[form] = log_alpha.grad.item()
    assert grads["log_alpha"] == pytest.approx(-1.0)  # -(mean log pi + target)
    assert grads["alpha"] == pytest.approx(-0.1)  # the same, times alpha
