"""CrossQ: batch renormalization (train and eval behaviour), the joint forward, the policy delay, and the agent
running through the shared trainer, checkpoints, load_policy and export."""

import numpy as np
import pytest
import torch

from pathwise.agents.batch import Batch
from pathwise.agents.crossq import CrossQ, CrossQConfig, critic_loss
from pathwise.agents.networks import BatchRenorm, hidden_linears, project_to_unit_rows_

OBS, ACT, B = 3, 2, 64


def make_batch(seed=0, terminated=None):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, OBS, generator=g) * 3 + 1, torch.rand(B, ACT, generator=g) * 2 - 1,
                 torch.randn(B, generator=g), torch.randn(B, OBS, generator=g) * 3 + 1,
                 torch.zeros(B) if terminated is None else terminated, torch.full((B,), 0.99))


def make_agent(**kw):
    torch.manual_seed(0)
    return CrossQ(OBS, ACT, CrossQConfig(**{"actor_hidden_sizes": (32, 32), "critic_hidden_sizes": (64, 64), **kw}),
                  torch.device("cpu"))


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def small_crossq():
    return CrossQConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(64, 64))


# ---- batch renormalization ----------------------------------------------------------------------------------


def test_batch_renorm_before_warmup_is_batch_norm_and_moves_the_running_statistics():
    layer = BatchRenorm(5, momentum=0.1, warmup_steps=10)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0)
        layer.bias.uniform_(-1.0, 1.0)
    x = torch.randn(128, 5) * 4 + 2
    expected = torch.nn.functional.batch_norm(x, None, None, layer.weight[0], layer.bias[0], training=True, eps=1e-3)
    torch.testing.assert_close(layer(x, train=True), expected)
    torch.testing.assert_close(layer.running_mean[0], 0.1 * x.mean(0))
    torch.testing.assert_close(layer.running_var[0], 0.9 + 0.1 * x.var(0, unbiased=False))
    assert layer.steps == 1


def test_batch_renorm_after_warmup_corrects_towards_the_running_statistics_within_bounds():
    layer = BatchRenorm(4, warmup_steps=0, r_max=3.0, d_max=5.0)
    mean = torch.tensor([[0.0, 1.0, 100.0, 0.0]])
    std = torch.tensor([[1.0, 1.0, 1.0, 50.0]])
    layer.running_mean.copy_(mean)
    layer.running_var.copy_(std.square() - 1e-3)  # so that sqrt(running_var + eps) is exactly std
    x = torch.randn(256, 4) * 2 + 1
    y = layer(x, train=True)
    batch_mean, batch_std = x.mean(0), (x.var(0, unbiased=False) + 1e-3).sqrt()
    r = (batch_std / std[0]).clamp(1 / 3, 3)
    d = ((batch_mean - mean[0]) / std[0]).clamp(-5, 5)
    torch.testing.assert_close(y, (x - batch_mean) / batch_std * r + d)
    assert r[3] == 1 / 3 and d[2] == -5  # a wide running std and a far running mean hit the bounds
    # r and d carry no gradient: the gradient is that of batch norm, scaled by r.
    x.requires_grad_(True)
    layer2 = BatchRenorm(4, warmup_steps=0)
    layer2.load_state_dict(layer.state_dict())
    (layer2(x, train=True)[:, 0] * torch.arange(256.0)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, 1:].abs().max() == 0


def test_batch_renorm_without_train_uses_running_statistics_so_one_row_equals_its_batch():
    layer = BatchRenorm(3, momentum=0.5)
    for _ in range(5):
        layer(torch.randn(64, 3) * 2 + 3, train=True)
    stats = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(10, 3)
    y = layer(x)
    torch.testing.assert_close(layer(x[3:4]), y[3:4])
    torch.testing.assert_close(y, (x - stats["running_mean"]) / (stats["running_var"] + 1e-3).sqrt())
    assert all(torch.equal(v, stats[k]) for k, v in layer.state_dict().items())  # nothing moved


def test_batch_renorm_keeps_separate_statistics_per_ensemble_member():
    layer = BatchRenorm(4, ensemble_size=2, momentum=1.0)
    x = torch.stack([torch.randn(32, 4), torch.randn(32, 4) * 5 + 7])  # (E, B, F)
    y = layer(x, train=True)
    for e in range(2):
        torch.testing.assert_close(y[e], BatchRenorm(4, momentum=1.0)(x[e], train=True))
        torch.testing.assert_close(layer.running_mean[e, 0], x[e].mean(0))


# ---- one update ---------------------------------------------------------------------------------------------


def test_critic_loss_sends_both_halves_through_one_forward_and_targets_the_detached_second():
    agent = make_agent()
    batch = make_batch(terminated=torch.ones(B))
    torch.manual_seed(1)
    loss, _ = critic_loss(batch, agent.actor, agent.critic, agent.alpha)
    # The input layer's statistics moved towards the mean of s and s' together, not of s alone.
    first = agent.critic.norms[0]
    joint_obs = torch.cat([batch.obs, batch.next_obs])
    torch.testing.assert_close(first.running_mean[0, 0, :OBS], 0.01 * joint_obs.mean(0))
    assert not torch.allclose(first.running_mean[0, 0, :OBS], 0.01 * batch.obs.mean(0), atol=1e-3)
    # All terminal: the target is the reward alone (the same draw of a', so the same batch statistics).
    torch.manual_seed(1)
    next_action, _ = agent.actor(batch.next_obs).rsample_and_log_prob()
    q = agent.critic(joint_obs, torch.cat([batch.action, next_action]), train=True)[:, :B]  # (E, B)
    torch.testing.assert_close(loss, 0.5 * (q - batch.reward).square().mean(dim=1).sum())
    loss.backward()
    assert all(p.grad is not None for p in agent.critic.parameters())
    assert all(p.grad is None for p in agent.actor.parameters())
    assert not hasattr(agent, "critic_target")


def test_actor_and_temperature_move_on_the_first_update_and_then_every_policy_delay_updates():
    agent = make_agent(policy_delay=3)
    moves = []
    for step in range(7):
        critic, actor, log_alpha = flat(agent.critic).clone(), flat(agent.actor).clone(), agent.log_alpha.item()
        actor_stats = agent.actor.trunk[0].running_mean.clone()
        critic_stats = agent.critic.norms[1].running_mean.clone()
        info = agent.update(make_batch(step))
        # The critics' statistics move at every update: their loss runs in training mode.
        assert not torch.equal(agent.critic.norms[1].running_mean, critic_stats)
        assert torch.isfinite(info["critic_loss"]) and not torch.equal(flat(agent.critic), critic)
        actor_moved = not torch.equal(flat(agent.actor), actor)
        assert actor_moved == (agent.log_alpha.item() != log_alpha)
        assert actor_moved == (not torch.equal(agent.actor.trunk[0].running_mean, actor_stats))
        moves.append(actor_moved)
    assert moves == [True, False, False] * 2 + [True]
    assert {"critic_loss", "actor_loss", "alpha", "entropy", "q_mean"} <= info.keys()


def test_the_actor_loss_reaches_the_actor_through_its_action_not_the_critic_weights_or_statistics():
    agent = make_agent()
    critic_state = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    loss, _ = agent.actor_losses(make_batch().obs, agent.alpha)
    loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    assert agent.log_alpha.grad is not None
    assert all(torch.equal(v, critic_state[k]) for k, v in agent.critic.state_dict().items())


@pytest.mark.parametrize("target_entropy, grows", [(100.0, True), (-100.0, False)])
def test_alpha_moves_towards_the_target_entropy(target_entropy, grows):
    agent = make_agent(target_entropy=target_entropy)
    alpha = agent.alpha.item()
    agent.update(make_batch())
    assert (agent.alpha.item() > alpha) == grows


def test_simba_temperature_settings_start_and_aim_where_set():
    agent = make_agent(init_alpha=0.01, target_entropy_per_dim=-0.5)
    assert agent.target_entropy == -0.5 * ACT and agent.alpha.item() == pytest.approx(0.01)


def test_optimizers_use_beta1_one_half_for_networks_and_default_betas_for_the_temperature():
    agent = make_agent()
    assert agent.critic_optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    actor_group, alpha_group = agent.actor_optimizer.param_groups
    assert actor_group["betas"] == (0.5, 0.999) and alpha_group["betas"] == (0.9, 0.999)
    assert alpha_group["params"] == [agent.log_alpha]


def test_acting_on_one_observation_matches_the_batch_and_stays_in_bounds():
    agent = make_agent()
    for step in range(3):
        agent.update(make_batch(step))
    obs = torch.randn(16, OBS)
    mode = agent.act(obs, deterministic=True)
    torch.testing.assert_close(agent.act(obs[5:6], deterministic=True), mode[5:6])
    assert agent.act(obs).abs().max() <= 1.0


# ---- weight normalization -----------------------------------------------------------------------------------


def unit_norms(agent):
    """Per hidden unit, the norm of (weights, bias): the actor's two trunk layers and the critics' two layers."""
    actor = [torch.cat([m.weight, m.bias[:, None]], 1).norm(dim=1) for m in agent.actor.trunk
             if isinstance(m, torch.nn.Linear)]
    critic = [torch.cat([m.weight, m.bias], 1).norm(dim=1).flatten() for m in agent.critic.layers[:-1]]
    return actor + critic


def test_weight_norm_keeps_every_hidden_unit_at_unit_norm_and_leaves_the_heads_free():
    agent = make_agent(weight_norm=True)
    assert len(unit_norms(agent)) == 4
    for step in range(4):
        agent.update(make_batch(step))
        for norms in unit_norms(agent):
            torch.testing.assert_close(norms, torch.ones_like(norms))
    head = agent.critic.layers[-1]
    assert not torch.allclose(torch.cat([head.weight, head.bias], 1).norm(dim=1), torch.ones(2, 1))
    # off by default: after the same updates the units' norms are whatever Adam made them
    plain = make_agent()
    for step in range(4):
        plain.update(make_batch(step))
    assert not any(torch.allclose(n, torch.ones_like(n), atol=1e-3) for n in unit_norms(plain))


def test_the_projection_does_not_change_what_batch_normalized_networks_compute():
    """Scaling a unit's weights and bias scales its ReLU output, and the batch norm after it divides that out:
    in training mode (the batch's statistics) the critics' Q values and the actor's distribution are unchanged,
    up to batch norm's epsilon (made negligible here: next to a nearly dead unit's small variance it is not)."""
    agent = make_agent()  # plain: its units' norms are not one
    batch = make_batch()
    for layer in [*agent.critic.modules(), *agent.actor.modules()]:
        if isinstance(layer, BatchRenorm):
            layer.eps = 1e-8
    with torch.no_grad():
        q = agent.critic(batch.obs, batch.action, train=True, frozen=True)
        dist = agent.actor(batch.obs, train=True)
        project_to_unit_rows_(hidden_linears(agent.critic) + hidden_linears(agent.actor))
        norms = unit_norms(agent)
        torch.testing.assert_close(agent.critic(batch.obs, batch.action, train=True, frozen=True), q, rtol=1e-3,
                                   atol=1e-3)
        projected = agent.actor(batch.obs, train=True)
        torch.testing.assert_close(projected.loc, dist.loc, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(projected.scale, dist.scale, rtol=1e-3, atol=1e-3)
    assert all(torch.allclose(n, torch.ones_like(n)) for n in norms)


# ---- through the trainer ------------------------------------------------------------------------------------


def test_crossq_trains_saves_loads_exports_and_resumes_exactly(tiny, tmp_path):
    from pathwise import export_policy, load_policy
    from pathwise.checkpoint import load_checkpoint
    from pathwise.run import build_trainer, resume, train

    common = dict(agent=small_crossq(), total_steps=400, eval_episodes=1)
    trainer = build_trainer(tiny(run_dir=str(tmp_path / "straight"), **common))
    straight = trainer.run()
    trainer.close()
    state = load_checkpoint(straight.checkpoint)["agent_state"]
    assert state["updates"] == 300 and int(state["critic"]["norms.1.steps"]) == 300
    assert int(state["actor"]["trunk.0.steps"]) == 100  # policy delay 3

    policy = load_policy(straight.checkpoint)
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    expected = 2.0 * trainer.policy(deterministic=True)(obs)
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(policy.act(obs[2]), expected[2], rtol=1e-5, atol=1e-6)
    export_policy(policy, tmp_path / "policy.pt2")
    with torch.no_grad():
        exported = torch.export.load(tmp_path / "policy.pt2").module()(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(exported, expected, rtol=1e-5, atol=1e-6)

    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 200}))
    resumed = resume(tmp_path / "split", {"total_steps": 400})
    a, b = (load_checkpoint(s.checkpoint)["agent_state"] for s in (straight, resumed))
    for part in ("actor", "critic"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert resumed.eval_return_mean == straight.eval_return_mean


@pytest.mark.parametrize("field, value, message", [
    ("critic_hidden_sizes", (), "critic_hidden_sizes must be one or more positive widths"),
    ("adam_beta1", 1.0, "adam_beta1 must lie in"),
    ("batch_norm_momentum", 0.0, "batch_norm_momentum must lie in"),
    ("network", "residual", "weight_norm needs the mlp network"),
])
def test_bad_crossq_values_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        CrossQConfig(**{field: value, **({"weight_norm": True} if field == "network" else {})})
