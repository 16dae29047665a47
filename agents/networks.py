"""The actor (observation -> TanhNormal) and the critic ensemble (observation, action -> one Q per member)."""

import math

import torch
from torch import nn

from agents.distributions import NoisyDeterministic, TanhNormal


def mlp(in_dim: int, hidden_sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...],
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_sizes)
        self.head = nn.Linear(hidden_sizes[-1], 2 * act_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> TanhNormal:
        # float(): under bf16 autocast the matmuls run in bf16, the distribution and its log-probs in float32.
        loc, log_std = self.head(self.trunk(obs)).float().chunk(2, dim=-1)  # (B, A) each
        # A smooth squash into [min, max] rather than a clamp, so the bound never zeroes the gradient.
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1.0)
        return TanhNormal(loc, log_std.exp(), validate_args=False)


class DeterministicActor(nn.Module):
    """observation -> tanh(MLP(observation)) in [-1, 1], with Gaussian exploration noise when sampled."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], exploration_noise: float = 0.1):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_sizes)
        self.head = nn.Linear(hidden_sizes[-1], act_dim)
        self.exploration_noise = exploration_noise

    def forward(self, obs: torch.Tensor) -> NoisyDeterministic:
        return NoisyDeterministic(torch.tanh(self.head(self.trunk(obs)).float()), self.exploration_noise)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, ensemble_size: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_dim))
        # nn.Linear's default initialisation, drawn independently for each member.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        if frozen:  # gradients flow to x only: the weight-gradient matmuls are skipped
            return torch.baddbmm(self.bias.detach(), x, self.weight.detach())
        return torch.baddbmm(self.bias, x, self.weight)


class QEnsemble(nn.Module):
    """`num_critics` Q networks evaluated together; forward returns Q values of shape (E, B)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], num_critics: int = 2):
        super().__init__()
        self.num_critics = num_critics
        sizes = (obs_dim + act_dim, *hidden_sizes, 1)
        self.layers = nn.ModuleList(EnsembleLinear(num_critics, i, o) for i, o in zip(sizes[:-1], sizes[1:]))

    def forward(self, obs: torch.Tensor, action: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Q values (E, B). With `frozen`, no gradient reaches the weights (the actor loss needs only dQ/da)."""
        x = torch.cat([obs, action], dim=-1)  # (B, O + A)
        x = x.expand(self.num_critics, *x.shape)  # (E, B, O + A)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x, frozen))
        return self.layers[-1](x, frozen).squeeze(-1).float()
