import pytest
import torch

from agents import networks
from agents.networks import NARROW, Actor, QEnsemble, relu_

dot_head = networks._dot_head
bias_apart = networks._bias_apart


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


def test_relu_under_compile_saves_no_boolean_mask_and_has_relus_gradient():
    # The critics' forward in an actor loss: frozen weights, so no layer's backward keeps a ReLU's output, and a
    # compiler left to itself saves the mask x <= 0 instead (slow to write on a CPU); ours keeps the output.
    torch.manual_seed(0)
    critic = QEnsemble(obs_dim=4, act_dim=2, hidden_sizes=(16, 16))
    obs = torch.randn(8, 4)
    action = torch.rand(8, 2, requires_grad=True)

    def saved_dtypes(fn):
        dtypes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: dtypes.append(t.dtype) or t, lambda t: t):
            q = fn(obs, action)
        (grad,) = torch.autograd.grad(q.sum(), action)
        return dtypes, grad

    def forward(obs, action):
        return critic(obs, action, frozen=True)

    _, eager_grad = saved_dtypes(forward)
    compiled_dtypes, compiled_grad = saved_dtypes(torch.compile(forward))
    assert torch.bool not in compiled_dtypes and compiled_dtypes
    torch.testing.assert_close(compiled_grad, eager_grad)
    x = torch.randn(3, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.compile(relu_)(x * 1.0).sum(), x)
    torch.testing.assert_close(grad, (x > 0).float())


@pytest.mark.parametrize("obs_dim, act_dim", [(3, 2), (11, 3)])  # first layer narrow (5 inputs) and wide (14)
def test_layers_written_out_under_compile_match_the_matmuls(obs_dim, act_dim, monkeypatch):
    # Under torch.compile on a CPU the heads (at most NARROW outputs) and a narrow first layer are products and
    # sums instead of matmuls, and the other layers add their bias apart from the matmul; outputs and gradients
    # must be the fused matmuls', frozen or not.
    heads, apart = [], []
    monkeypatch.setattr(networks, "_dot_head", lambda *args: heads.append(1) or dot_head(*args))
    monkeypatch.setattr(networks, "_bias_apart", lambda *args: apart.append(1) or bias_apart(*args))
    torch.manual_seed(0)
    critic, actor = QEnsemble(obs_dim, act_dim, (16, 16)), Actor(obs_dim, act_dim, (16, 16))
    assert 2 * act_dim <= NARROW
    obs = torch.randn(8, obs_dim)
    action = torch.rand(8, act_dim, requires_grad=True)

    def losses(obs, action):
        dist = actor(obs)
        return critic(obs, action).sum() + critic(obs, action, frozen=True).square().sum() + dist.loc.square().sum()

    def grads(fn):
        params = [*critic.parameters(), *actor.parameters(), action]
        loss = fn(obs, action)
        return [loss, *torch.autograd.grad(loss, params)]

    eager = grads(losses)
    assert not heads and not apart  # eager mode: the fused matmuls
    for compiled, expected in zip(grads(torch.compile(losses)), eager, strict=True):
        torch.testing.assert_close(compiled, expected, rtol=1e-5, atol=1e-5)
    assert heads and apart  # compiled: written out


def test_an_exported_policy_keeps_its_matmuls():
    # torch.export also traces as a compiler does; the file it writes is for other runtimes (Gemm in ONNX).
    head = Actor(3, 1, (16, 16)).head
    exported = torch.export.export(head, (torch.randn(2, 16),))
    ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "aten.linear.default" in ops and "aten.sum.dim_IntList" not in ops
