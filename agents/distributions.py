"""The tanh-squashed Gaussian: SAC's policy distribution over actions in [-1, 1]."""

import math

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Normal, constraints

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_NO_SHAPE = torch.Size()


def tanh_log_abs_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u) / du| = log(1 - tanh(u)^2), elementwise.

    Written as 2 * (log 2 - u - softplus(-2u)) (Spinning Up): the naive form underflows to log(0) once
    tanh(u) rounds to +-1, which happens in float32 from |u| ~ 9.
    """
    return 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))


class TanhNormal(Distribution):
    """a = tanh(u), u ~ Normal(loc, scale) independently per action dimension.

    The last dimension of `loc` is the action dimension and belongs to the event: `log_prob(a)` is the joint
    log-density of the whole action vector, **summed over action dimensions**, with shape `loc.shape[:-1]`.

    `rsample()` is reparameterized (a = tanh(loc + scale * eps)), so gradients flow into `loc` and `scale`.
    Training should call `rsample_and_log_prob()`, which takes the log-density from the pre-tanh sample
    itself; `log_prob(a)` has to invert tanh and is exact only where tanh has not saturated.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.independent(constraints.interval(-1.0, 1.0), 1)
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args: bool | None = None):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(TanhNormal, _instance)
        shape = torch.Size(batch_shape) + self.event_shape
        new.loc, new.scale = self.loc.expand(shape), self.scale.expand(shape)
        super(TanhNormal, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mode(self) -> torch.Tensor:
        """The deterministic action used for evaluation: tanh of the Gaussian's mode."""
        return torch.tanh(self.loc)

    def rsample(self, sample_shape: torch.Size = _NO_SHAPE) -> torch.Tensor:
        eps = torch.randn(self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
        return torch.tanh(self.loc + self.scale * eps)

    def rsample_and_log_prob(self, sample_shape: torch.Size = _NO_SHAPE) -> tuple[torch.Tensor, torch.Tensor]:
        """One reparameterized sample and its log-density, from the same pre-tanh draw (no atanh, no cache)."""
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        u = self.loc + self.scale * eps
        log_prob = -0.5 * eps.square() - self.scale.log() - _HALF_LOG_2PI - tanh_log_abs_det_jacobian(u)
        return torch.tanh(u), log_prob.sum(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        # A float32 tanh returns exactly +-1 for |u| > 9; keep atanh finite there.
        eps = torch.finfo(value.dtype).eps
        u = torch.atanh(value.clamp(-1.0 + eps, 1.0 - eps))
        base = Normal(self.loc, self.scale, validate_args=False)
        return (base.log_prob(u) - tanh_log_abs_det_jacobian(u)).sum(-1)


class NoisyDeterministic:
    """A deterministic policy's action with Gaussian exploration noise, in the face TanhNormal shows the trainer:
    `mode` is the action itself (differentiable), `sample()` adds noise and clips to [-1, 1]."""

    def __init__(self, action: torch.Tensor, noise_std: float):
        self.action, self.noise_std = action, noise_std

    @property
    def mode(self) -> torch.Tensor:
        return self.action

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            return (self.action + self.noise_std * torch.randn_like(self.action)).clamp(-1.0, 1.0)
