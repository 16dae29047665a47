import torch

from pathwise.agents.networks import Actor, QEnsemble


def test_critic_ensemble_shapes_and_independent_members():
    torch.manual_seed(0)
    critic = QEnsemble(obs_dim=5, act_dim=2, hidden_sizes=(16, 16), num_critics=3)
    q = critic(torch.randn(7, 5), torch.rand(7, 2))
    assert q.shape == (3, 7)
    assert not torch.allclose(q[0], q[1])


def test_ensemble_member_equals_a_plain_mlp_with_its_weights():
    torch.manual_seed(0)
    critic = QEnsemble(obs_dim=4, act_dim=1, hidden_sizes=(8,), num_critics=2)
    obs, act = torch.randn(5, 4), torch.rand(5, 1)
    x = torch.cat([obs, act], -1)
    w0, b0 = critic.layers[0].weight[1], critic.layers[0].bias[1]
    w1, b1 = critic.layers[1].weight[1], critic.layers[1].bias[1]
    expected = (torch.relu(x @ w0 + b0) @ w1 + b1).squeeze(-1)
    torch.testing.assert_close(critic(obs, act)[1], expected)


def test_actor_log_std_stays_within_bounds():
    actor = Actor(obs_dim=3, act_dim=2, hidden_sizes=(16,), log_std_min=-5.0, log_std_max=2.0)
    with torch.no_grad():
        actor.head.bias.fill_(1e4)
    dist = actor(torch.randn(4, 3))
    assert dist.scale.log().max() <= 2.0 + 1e-5
    with torch.no_grad():
        actor.head.bias.fill_(-1e4)
    assert actor(torch.randn(4, 3)).scale.log().min() >= -5.0 - 1e-5


def test_a_clipped_log_std_is_the_heads_output_within_the_bounds():
    torch.manual_seed(0)
    squashed = Actor(4, 2, (16,), log_std_min=-5.0, log_std_max=2.0)
    clipped = Actor(4, 2, (16,), log_std_min=-20.0, log_std_max=2.0, log_std_bound="clip")
    clipped.load_state_dict(squashed.state_dict())
    obs = torch.randn(64, 4)
    raw = clipped.head(clipped.trunk(obs)).chunk(2, dim=-1)[1]
    torch.testing.assert_close(clipped(obs).scale.log(), raw)  # in bounds: the output itself (std near 1 at init)
    torch.testing.assert_close(squashed(obs).scale.log(), -5.0 + 3.5 * (torch.tanh(raw) + 1.0))
    with torch.no_grad():
        clipped.head.bias.fill_(50.0)
    log_std = clipped(obs).scale.log()
    torch.testing.assert_close(log_std, torch.full_like(log_std, 2.0))


def test_a_residual_critic_member_is_stem_blocks_norm_head_with_its_weights():
    import torch.nn.functional as F
    torch.manual_seed(0)
    critic = QEnsemble(obs_dim=4, act_dim=1, hidden_sizes=(8, 8), num_critics=2, network="residual")
    with torch.no_grad():  # scales and shifts away from 1 and 0, so a missing one shows
        for p in critic.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs, act = torch.randn(5, 4), torch.rand(5, 1)
    m = 1  # the second member, computed by hand

    def ln(x, norm):
        return F.layer_norm(x, (8,)) * norm.weight[m] + norm.bias[m]

    def lin(x, layer):
        return x @ layer.weight[m] + layer.bias[m]

    x = lin(torch.cat([obs, act], -1), critic.layers[0])
    for block in critic.blocks:
        x = x + lin(torch.relu(lin(ln(x, block.norm), block.up)), block.down)
    expected = lin(ln(x, critic.norms[-1]), critic.layers[1]).squeeze(-1)
    torch.testing.assert_close(critic(obs, act)[m], expected)
    assert critic.blocks[0].up.weight.shape == (2, 8, 32)  # four times wider inside the block


def test_a_frozen_residual_critic_passes_gradients_to_the_action_only():
    critic = QEnsemble(obs_dim=3, act_dim=2, hidden_sizes=(8,), num_critics=2, network="residual")
    action = torch.rand(4, 2, requires_grad=True)
    critic(torch.randn(4, 3), action, frozen=True).sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_a_residual_actor_has_blocks_and_a_final_layer_norm():
    actor = Actor(3, 2, (16, 16), network="residual")
    kinds = [type(m).__name__ for m in actor.trunk]
    assert kinds == ["Linear", "ResidualBlock", "ResidualBlock", "LayerNorm"]
    dist = actor(torch.randn(6, 3))
    assert dist.mode.shape == (6, 2)
