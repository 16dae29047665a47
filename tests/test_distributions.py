import math

import pytest
import torch
from torch.distributions import Independent, Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from pathwise.agents.distributions import TanhNormal, tanh_log_abs_det_jacobian


def reference(loc, scale):
    return Independent(TransformedDistribution(Normal(loc, scale), [TanhTransform()]), 1)


def test_is_a_reparameterized_torch_distribution():
    dist = TanhNormal(torch.zeros(4, 3), torch.ones(4, 3))
    assert isinstance(dist, torch.distributions.Distribution) and dist.has_rsample
    assert dist.batch_shape == (4,) and dist.event_shape == (3,)
    assert dist.rsample().shape == (4, 3) and dist.rsample((5,)).shape == (5, 4, 3)
    assert dist.expand((2, 4)).rsample().shape == (2, 4, 3)


def test_log_prob_matches_torch_tanh_transformed_normal_and_sums_over_action_dims():
    torch.manual_seed(0)
    loc, scale = torch.randn(64, 3, dtype=torch.float64), torch.rand(64, 3, dtype=torch.float64) + 0.1
    action = torch.rand(64, 3, dtype=torch.float64) * 1.8 - 0.9
    ours = TanhNormal(loc, scale).log_prob(action)
    assert ours.shape == (64,)
    torch.testing.assert_close(ours, reference(loc, scale).log_prob(action))


def test_fused_sample_log_prob_equals_log_prob_of_the_sample():
    torch.manual_seed(1)
    dist = TanhNormal(torch.randn(256, 2, dtype=torch.float64), torch.rand(256, 2, dtype=torch.float64) + 0.2)
    action, log_prob = dist.rsample_and_log_prob()
    torch.testing.assert_close(log_prob, dist.log_prob(action))


def test_samples_lie_in_the_open_interval_and_mode_is_tanh_of_loc():
    loc = torch.tensor([[-3.0, 0.0, 3.0]])
    dist = TanhNormal(loc, torch.full_like(loc, 0.5))
    samples = dist.sample((1000,))
    assert samples.abs().max() < 1.0  # |u| stays far below float32 tanh's saturation at 9
    torch.testing.assert_close(dist.mode, torch.tanh(loc))


def test_rsample_carries_gradients_into_loc_and_scale():
    loc = torch.zeros(8, 2, requires_grad=True)
    log_scale = torch.zeros(8, 2, requires_grad=True)
    action, log_prob = TanhNormal(loc, log_scale.exp()).rsample_and_log_prob()
    (action.sum() + log_prob.sum()).backward()
    assert loc.grad is not None and loc.grad.abs().sum() > 0
    assert log_scale.grad is not None and log_scale.grad.abs().sum() > 0
    # d tanh(mu + sigma * eps) / d mu = 1 - tanh^2 > 0 for every sample: the gradient runs through the sample.
    loc.grad = None
    TanhNormal(loc, log_scale.exp()).rsample().sum().backward()
    assert (loc.grad > 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_stays_finite_when_tanh_saturates(dtype):
    loc = torch.tensor([[-30.0, 12.0, 50.0]], dtype=dtype, requires_grad=True)
    dist = TanhNormal(loc, torch.full((1, 3), 0.1, dtype=dtype))
    action, log_prob = dist.rsample_and_log_prob()
    assert (action.abs() == 1.0).any()  # saturated in this precision
    assert torch.isfinite(log_prob).all()
    assert torch.isfinite(dist.log_prob(action)).all()
    assert torch.isfinite(dist.log_prob(torch.ones(1, 3, dtype=dtype))).all()
    log_prob.sum().backward()
    assert torch.isfinite(loc.grad).all()


def test_jacobian_term_matches_the_naive_formula_and_stays_exact_in_saturation():
    u = torch.linspace(-5, 5, 101, dtype=torch.float64)
    torch.testing.assert_close(tanh_log_abs_det_jacobian(u), torch.log(1 - torch.tanh(u) ** 2))
    # log(1 - tanh(u)^2) = log 4 - 2|u| - 2 log(1 + exp(-2|u|)); the naive float32 formula gives -inf here.
    big = torch.tensor([20.0, -20.0, 60.0])
    assert torch.isinf(torch.log(1 - torch.tanh(big) ** 2)).all()
    torch.testing.assert_close(tanh_log_abs_det_jacobian(big), math.log(4) - 2 * big.abs())
