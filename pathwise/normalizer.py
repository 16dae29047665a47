"""Observation normalization by a running mean and variance, saved with the policy that depends on it."""

import torch
from torch import nn


class ObsNormalizer(nn.Module):
    """forward(obs) = clip((obs - mean) / sqrt(var + eps), -clip, clip), with mean and var updated by `update`.

    The statistics are buffers, so they travel in state_dict(), checkpoints and exported programs.
    """

    def __init__(self, obs_dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("var", torch.ones(obs_dim))
        # A tiny prior count, as in Stable-Baselines3's RunningMeanStd: the first update all but replaces it.
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Fold a batch (N, O) into the statistics (Chan et al.'s parallel variance update)."""
        n = obs.shape[0]
        batch_mean, batch_var = obs.mean(0), obs.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * (n / total).float()
        m2 = self.var * self.count.float() + batch_var * n + delta.square() * (self.count * n / total).float()
        self.var.copy_(m2 / total.float())
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)
