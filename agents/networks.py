"""The actor (observation -> TanhNormal) and the critic ensemble (observation, action -> one Q per member), the
batch renormalization that CrossQ puts in both, and the residual blocks of the `residual` network.

Every forward takes the mode explicitly: `train=True` normalizes by the batch's statistics (and moves the running
ones), the default by the running statistics alone, as acting and evaluation need. Nothing here depends on a
module's `.training` flag.
"""

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pathwise.agents.distributions import NoisyDeterministic, TanhNormal


class BatchRenorm(nn.Module):
    """Batch renormalization (Ioffe 2017, algorithm 1) over the batch dimension (-2) of (B, F) or, per member, of
    (E, B, F).

    With `train`, it normalizes by the batch's statistics, corrected towards the running ones by r and d (held to
    [1/r_max, r_max] and [-d_max, d_max], constants to the gradient) once `warmup_steps` training calls have
    passed, plain batch norm before; it moves the running statistics by `momentum`. Without, it uses the running
    statistics alone, so a single observation is normalized as the batches were.
    """

    def __init__(self, num_features: int, ensemble_size: int | None = None, momentum: float = 0.01,
                 warmup_steps: int = 100_000, eps: float = 1e-3, r_max: float = 3.0, d_max: float = 5.0):
        super().__init__()
        shape = (1, num_features) if ensemble_size is None else (ensemble_size, 1, num_features)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.momentum, self.warmup_steps, self.eps, self.r_max, self.d_max = momentum, warmup_steps, eps, r_max, d_max

    def forward(self, x: torch.Tensor, train: bool = False, frozen: bool = False) -> torch.Tensor:
        """`frozen`: the scale and shift detached, so that the gradient reaches x alone."""
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        # Statistics in the running statistics' precision (float32 under bf16 autocast, as batch norm).
        x = x.to(self.running_mean.dtype)
        running_std = (self.running_var + self.eps).sqrt()
        if not train:
            return (x - self.running_mean) / running_std * weight + bias
        mean, var = x.mean(dim=-2, keepdim=True), x.var(dim=-2, keepdim=True, unbiased=False)
        std = (var + self.eps).sqrt()
        with torch.no_grad():
            warm = self.steps >= self.warmup_steps  # a tensor: no host sync
            r = torch.where(warm, (std / running_std).clamp(1.0 / self.r_max, self.r_max), 1.0)
            d = torch.where(warm, ((mean - self.running_mean) / running_std).clamp(-self.d_max, self.d_max), 0.0)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
            self.steps.add_(1)  # in place: an attribute set inside a compiled loss adds Python guards to every call
        return ((x - mean) / std * r + d) * weight + bias


class LayerNorm(nn.Module):
    """Layer normalization over the features (-1) of (B, F), or of (E, B, F) with a scale and shift per member."""

    def __init__(self, num_features: int, ensemble_size: int | None = None, eps: float = 1e-5):
        super().__init__()
        shape = (num_features,) if ensemble_size is None else (ensemble_size, 1, num_features)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.num_features, self.eps = num_features, eps

    def forward(self, x: torch.Tensor, train: bool = False, frozen: bool = False) -> torch.Tensor:
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        return F.layer_norm(x, (self.num_features,), eps=self.eps) * weight + bias


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
        """`frozen`: gradients flow to x only, and the weight-gradient matmuls are skipped."""
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        return torch.baddbmm(bias, x, weight)


# A normalization layer for a width (and an ensemble size, for the critics), or None for plain networks.
Norm = Callable[..., nn.Module] | None


class Trunk(nn.Sequential):
    """Layers applied in turn, the normalizations and residual blocks told the mode."""

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        for layer in self:
            x = layer(x, train=train) if isinstance(layer, (BatchRenorm, LayerNorm, ResidualBlock)) else layer(x)
        return x


def mlp(in_dim: int, hidden_sizes: tuple[int, ...], norm: Norm = None) -> Trunk:
    """Linear -> ReLU per width; with `norm`, a normalization of the input and after each ReLU (as CrossQ)."""
    layers: list[nn.Module] = [norm(in_dim)] if norm else []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), nn.ReLU()] + ([norm(width)] if norm else [])
        in_dim = width
    return Trunk(*layers)


class ResidualBlock(nn.Module):
    """x + W2 ReLU(W1 norm(x)), W1 four times wider than x: the pre-norm block of SimBa (Lee et al. 2025) and BRO
    (Nauman et al. 2024). With `ensemble_size`, E independent blocks over (E, B, F), as the critics."""

    def __init__(self, width: int, norm: Callable[..., nn.Module], ensemble_size: int | None = None):
        super().__init__()
        self.ensemble = ensemble_size is not None
        linear = functools.partial(EnsembleLinear, ensemble_size) if self.ensemble else nn.Linear
        self.norm = norm(width, ensemble_size) if self.ensemble else norm(width)
        self.up, self.down = linear(width, 4 * width), linear(4 * width, width)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, train: bool = False, frozen: bool = False) -> torch.Tensor:
        if self.ensemble:
            return x + self.down(self.relu(self.up(self.norm(x, train, frozen), frozen)), frozen)
        return x + self.down(self.relu(self.up(self.norm(x, train))))


def residual_trunk(in_dim: int, hidden_sizes: tuple[int, ...], norm: Norm = None) -> Trunk:
    """[norm ->] Linear to the width -> one ResidualBlock per hidden size -> a final norm. The blocks normalize
    with `norm` (CrossQ's batch renormalization, which also normalizes the input) or else LayerNorm."""
    width = hidden_sizes[0]
    block_norm = norm or LayerNorm
    layers: list[nn.Module] = [norm(in_dim)] if norm else []
    layers += [nn.Linear(in_dim, width), *(ResidualBlock(width, block_norm) for _ in hidden_sizes),
               block_norm(width)]
    return Trunk(*layers)


def trunk(in_dim: int, hidden_sizes: tuple[int, ...], norm: Norm = None, network: str = "mlp") -> Trunk:
    return residual_trunk(in_dim, hidden_sizes, norm) if network == "residual" else mlp(in_dim, hidden_sizes, norm)


def hidden_linears(module: nn.Module) -> list[nn.Module]:
    """The linear layers of `module` whose output goes through a ReLU into a normalization (every one but the
    heads, in CrossQ's actor and critics): batch normalization after them makes the network's output blind to each
    output unit's scale, weights and bias together."""
    if isinstance(module, QEnsemble):
        return list(module.layers[:-1])
    return [layer for layer in module.trunk if isinstance(layer, nn.Linear)]


@torch.no_grad()
def project_to_unit_rows_(linears: list[nn.Module]) -> None:
    """Weight normalization by projection: each output unit's (weights, bias) scaled to unit norm.

    With a normalization after the ReLU, what the network computes from a batch's statistics is unchanged by it
    (up to the normalization's epsilon), while the norm stays at one, so the effective learning rate stays what
    Adam's is (the growth of the critics' weights at high update ratios otherwise shrinks it; Palenicek et al.
    2025, CrossQ + WN). nn.Linear's weight is (out, in), EnsembleLinear's (E, in, out)."""
    for layer in linears:
        weight, bias, ensemble = layer.weight, layer.bias, isinstance(layer, EnsembleLinear)
        # unit j: weight[j, :] and bias[j] (nn.Linear), weight[e, :, j] and bias[e, 0, j] (member e of an ensemble)
        norm = (weight.square().sum(dim=1, keepdim=ensemble) + bias.square()).sqrt()  # (out,) or (E, 1, out)
        weight.div_(norm if ensemble else norm.unsqueeze(1))
        bias.div_(norm)


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...],
                 log_std_min: float = -5.0, log_std_max: float = 2.0, norm: Norm = None,
                 log_std_bound: str = "tanh", network: str = "mlp"):
        super().__init__()
        self.trunk = trunk(obs_dim, hidden_sizes, norm, network)
        self.head = nn.Linear(hidden_sizes[-1], 2 * act_dim)
        self.log_std_min, self.log_std_max, self.log_std_bound = log_std_min, log_std_max, log_std_bound

    def forward(self, obs: torch.Tensor, train: bool = False) -> TanhNormal:
        # float(): under bf16 autocast the matmuls run in bf16, the distribution and its log-probs in float32.
        loc, log_std = self.head(self.trunk(obs, train)).float().chunk(2, dim=-1)  # (B, A) each
        if self.log_std_bound == "clip":  # the head's output itself: about 0 at initialization, a std near 1
            log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        else:  # a smooth squash into [min, max], so the bound never zeroes the gradient; std 0.22 at initialization
            log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1.0)
        return TanhNormal(loc, log_std.exp(), validate_args=False)


class DeterministicActor(nn.Module):
    """observation -> tanh(MLP(observation)) in [-1, 1], with Gaussian exploration noise when sampled."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], exploration_noise: float = 0.1,
                 network: str = "mlp"):
        super().__init__()
        self.trunk = trunk(obs_dim, hidden_sizes, network=network)
        self.head = nn.Linear(hidden_sizes[-1], act_dim)
        self.exploration_noise = exploration_noise

    def forward(self, obs: torch.Tensor, train: bool = False) -> NoisyDeterministic:
        return NoisyDeterministic(torch.tanh(self.head(self.trunk(obs, train)).float()), self.exploration_noise)


class QEnsemble(nn.Module):
    """`num_critics` Q networks evaluated together; forward returns Q values of shape (E, B), or (E, B, out_dim)
    with several outputs per member (a distributional critic's quantiles). With `norm`, each member normalizes
    its input and each hidden layer's output (after the ReLU), as CrossQ's critics. `network="residual"`: a
    residual trunk (`residual_trunk`) per member instead of the MLP."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], num_critics: int = 2,
                 norm: Norm = None, out_dim: int = 1, network: str = "mlp"):
        super().__init__()
        self.num_critics, self.out_dim = num_critics, out_dim
        self.relu = nn.ReLU()
        self.blocks = None
        if network == "residual":
            in_dim, width, block_norm = obs_dim + act_dim, hidden_sizes[0], norm or LayerNorm
            self.layers = nn.ModuleList([EnsembleLinear(num_critics, in_dim, width),
                                         EnsembleLinear(num_critics, width, out_dim)])
            self.blocks = nn.ModuleList(ResidualBlock(width, block_norm, num_critics) for _ in hidden_sizes)
            self.norms = nn.ModuleList(
                [*([norm(in_dim, num_critics)] if norm else []), block_norm(width, num_critics)])
            return
        sizes = (obs_dim + act_dim, *hidden_sizes, out_dim)
        self.layers = nn.ModuleList(EnsembleLinear(num_critics, i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(norm(width, num_critics) for width in sizes[:-1]) if norm else None

    def forward(self, obs: torch.Tensor, action: torch.Tensor, train: bool = False,
                frozen: bool = False) -> torch.Tensor:
        """Q values (E, B) or (E, B, out_dim). With `frozen`, no gradient reaches the weights (the actor loss
        needs only dQ/da)."""
        x = torch.cat([obs, action], dim=-1)  # (B, O + A)
        x = x.expand(self.num_critics, *x.shape)  # (E, B, O + A)
        if self.blocks is not None:  # [norm ->] stem -> blocks -> norm -> head
            if len(self.norms) == 2:
                x = self.norms[0](x, train, frozen)
            x = self.layers[0](x, frozen)
            for block in self.blocks:
                x = block(x, train, frozen)
            out = self.layers[1](self.norms[-1](x, train, frozen), frozen).float()
            return out.squeeze(-1) if self.out_dim == 1 else out
        for i, layer in enumerate(self.layers[:-1]):
            if self.norms is not None:
                x = self.norms[i](x, train, frozen)
            x = self.relu(layer(x, frozen))
        if self.norms is not None:
            x = self.norms[-1](x, train, frozen)
        out = self.layers[-1](x, frozen).float()
        return out.squeeze(-1) if self.out_dim == 1 else out
