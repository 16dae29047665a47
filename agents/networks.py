"""The actor (observation -> TanhNormal) and the critic ensemble (observation, action -> one Q per member), the
batch renormalization that CrossQ puts in both, and the residual blocks of the `residual` network."""

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from agents.distributions import NoisyDeterministic, TanhNormal


class BatchRenorm(nn.Module):
    """Batch renormalization (Ioffe 2017) over the batch dimension (-2) of (B, F) or, per member, of (E, B, F).

    In training mode it normalizes by the batch's statistics, corrected towards the running ones by r and d
    (held to [1/r_max, r_max] and [-d_max, d_max], without gradient) once `warmup_steps` training calls have
    passed, plain batch norm before; it moves the running statistics by `momentum`. In eval mode it uses the
    running statistics alone, so a single observation is normalized as the batches were.
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

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        # Statistics in the running statistics' precision (float32 under bf16 autocast, as batch norm).
        x = x.to(self.running_mean.dtype)
        if not self.training:  # one multiply-add: (x - m) / s * w + b = x * a + c, a and c per feature
            scale = torch.rsqrt(self.running_var + self.eps) * weight
            return torch.addcmul(bias - self.running_mean * scale, x, scale)
        warm = self.steps >= self.warmup_steps  # a tensor: no host sync
        y, mean, var = _BatchRenormTrain.apply(x, weight, bias, self.running_mean, self.running_var, warm,
                                               self.eps, self.r_max, self.d_max)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
            self.steps.add_(1)  # in place: an attribute set inside a compiled loss adds Python guards to every call
        return y


class _BatchRenormTrain(torch.autograd.Function):
    """Batch renormalization in training mode over dim -2, forward and backward written out: autograd's version
    (mean, var, then each factor applied in turn) made about ten full passes over the activations each way,
    and torch.var's Welford reduction over dim -2 alone was 15x slower than two plain passes on a CPU.

    y = ((x - m) / s * r + d) * w + b = (x - m) * a + c with a = r w / s and c = d w + b, per feature. Returns
    y and the batch's mean and biased variance (for the running statistics, without gradient)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, warm, eps, r_max, d_max):
        mean = x.mean(dim=-2, keepdim=True)
        centered = x - mean
        var = centered.square().mean(dim=-2, keepdim=True)
        inv_std = torch.rsqrt(var + eps)
        # r and d are constants to the gradient (Ioffe 2017, algorithm 1); r = 1, d = 0 before the warm-up ends.
        running_inv_std = torch.rsqrt(running_var + eps)
        r = torch.where(warm, (running_inv_std / inv_std).clamp(1.0 / r_max, r_max), 1.0)
        d = torch.where(warm, ((mean - running_mean) * running_inv_std).clamp(-d_max, d_max), 0.0)
        scale = inv_std * r * weight
        ctx.save_for_backward(centered, inv_std, r, d, scale)
        ctx.mark_non_differentiable(mean, var)
        return torch.addcmul(d * weight + bias, centered, scale), mean, var

    @staticmethod
    def backward(ctx, dy, _mean_grad, _var_grad):
        centered, inv_std, r, d, scale = ctx.saved_tensors
        n = centered.shape[-2]
        sum_dy = dy.sum(dim=-2, keepdim=True)
        sum_dy_centered = (dy * centered).sum(dim=-2, keepdim=True)
        dx = dweight = dbias = None
        if ctx.needs_input_grad[0]:  # batch norm's input gradient, times r: a (dy - mean(dy) - x^ mean(dy x^))
            dx = torch.addcmul(scale * sum_dy / -n, dy, scale)
            dx.addcmul_(centered, scale * inv_std.square() * sum_dy_centered / -n)
        if ctx.needs_input_grad[1]:  # dy/dw = x^ r + d, x^ = (x - m) / s
            dweight = r * inv_std * sum_dy_centered + d * sum_dy
        if ctx.needs_input_grad[2]:
            dbias = sum_dy
        return dx, dweight, dbias, None, None, None, None, None, None


class _ReLUSavingOutput(torch.autograd.Function):
    """ReLU whose backward multiplies by the sign of the output it saved (1 where positive, else 0): no boolean
    tensor anywhere in the graph. Left to itself, torch.compile's partitioner saves the mask `x <= 0` for the
    backward where the output is not otherwise kept (the critics' forward in the actor loss), and inductor's CPU
    kernels write boolean tensors 20-50x slower than eager does (1.2 ms against 50 us for 2 x 256 x 256). With
    the sign, what is saved is a float tensor, and the product fuses into the neighbouring backward kernels."""

    @staticmethod
    def forward(ctx, x):
        out = x.relu()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out.sign()


def relu_(x: torch.Tensor) -> torch.Tensor:
    """ReLU, in place in eager mode (the linear's backward does not need its input); under torch.compile on a CPU,
    one whose backward needs no boolean mask (`_ReLUSavingOutput`). On a GPU the compiler's own fused ReLU stays."""
    return _ReLUSavingOutput.apply(x) if torch.compiler.is_compiling() and x.is_cpu else x.relu_()


class ReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_(x)


# Under torch.compile on a CPU, a layer this narrow (inputs, or outputs) is written out as products and sums rather
# than a matmul: a oneDNN matmul costs about 20 us a call however few its FLOPs, while inductor fuses the products
# and sums into the kernels around them (the ReLU before a head, the concatenation before a first layer).
NARROW = 8


def _for_inductor_cpu(x: torch.Tensor) -> bool:
    """Whether layers are written for inductor's CPU kernels (narrow layers written out, biases apart)."""
    # Not under torch.export: an exported policy keeps its matmuls (Gemm in ONNX), for the runtime that reads it.
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting() and x.is_cpu


def _dot_head(x: torch.Tensor, weight_rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (..., in) against each row of weight_rows (..., out, in): (..., out), in float32."""
    with torch.autocast(x.device.type, enabled=False):
        return (x.float().unsqueeze(-2) * weight_rows).sum(-1) + bias


def _bias_apart(product: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A matmul's product plus its bias as a separate float32 add, which inductor fuses into the next kernel: a
    oneDNN bf16 matmul with the bias folded in (addmm, baddbmm) took 13-20 us longer than without it."""
    return product.float() + bias


class Linear(nn.Linear):
    """nn.Linear. Under torch.compile on a CPU a head with at most NARROW outputs is a dot product per output, and
    any other layer adds its bias apart from the matmul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _for_inductor_cpu(x):
            return super().forward(x)
        if self.out_features <= NARROW:
            return _dot_head(x, self.weight, self.bias)
        return _bias_apart(x @ self.weight.t(), self.bias)


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


class LayerNorm(nn.Module):
    """Layer normalization over the features (-1) of (B, F), or of (E, B, F) with a scale and shift per member."""

    def __init__(self, num_features: int, ensemble_size: int | None = None, eps: float = 1e-5):
        super().__init__()
        shape = (num_features,) if ensemble_size is None else (ensemble_size, 1, num_features)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.num_features, self.eps = num_features, eps

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        return F.layer_norm(x, (self.num_features,), eps=self.eps) * weight + bias


# A normalization layer for a width (and an ensemble size, for the critics), or None for plain networks.
Norm = Callable[..., nn.Module] | None


def mlp(in_dim: int, hidden_sizes: tuple[int, ...], norm: Norm = None) -> nn.Sequential:
    """Linear -> ReLU per width; with `norm`, a normalization of the input and after each ReLU (as CrossQ).

    The ReLU runs in place: the linear's backward does not need its output, and writing into memory still in
    cache took 2% off SAC's update."""
    layers: list[nn.Module] = [norm(in_dim)] if norm else []
    for width in hidden_sizes:
        layers += [Linear(in_dim, width), ReLU()] + ([norm(width)] if norm else [])
        in_dim = width
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """x + W2 ReLU(W1 norm(x)), W1 four times wider than x: the pre-norm block of SimBa (Lee et al. 2025) and BRO
    (Nauman et al. 2024). With `ensemble_size`, E independent blocks over (E, B, F), as the critics."""

    def __init__(self, width: int, norm: Callable[..., nn.Module], ensemble_size: int | None = None):
        super().__init__()
        self.ensemble = ensemble_size is not None
        linear = functools.partial(EnsembleLinear, ensemble_size) if self.ensemble else nn.Linear
        self.norm = norm(width, ensemble_size) if self.ensemble else norm(width)
        self.up, self.down = linear(width, 4 * width), linear(4 * width, width)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        if self.ensemble:
            return x + self.down(relu_(self.up(self.norm(x, frozen), frozen)), frozen)
        return x + self.down(relu_(self.up(self.norm(x))))


def residual_trunk(in_dim: int, hidden_sizes: tuple[int, ...], norm: Norm = None) -> nn.Sequential:
    """[norm ->] Linear to the width -> one ResidualBlock per hidden size -> a final norm. The blocks normalize
    with `norm` (CrossQ's batch renormalization, which also normalizes the input) or else LayerNorm."""
    width = hidden_sizes[0]
    block_norm = norm or LayerNorm
    layers: list[nn.Module] = [norm(in_dim)] if norm else []
    layers += [nn.Linear(in_dim, width), *(ResidualBlock(width, block_norm) for _ in hidden_sizes),
               block_norm(width)]
    return nn.Sequential(*layers)


def trunk(in_dim: int, hidden_sizes: tuple[int, ...], norm: Norm = None, network: str = "mlp") -> nn.Sequential:
    return residual_trunk(in_dim, hidden_sizes, norm) if network == "residual" else mlp(in_dim, hidden_sizes, norm)


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...],
                 log_std_min: float = -5.0, log_std_max: float = 2.0, norm: Norm = None,
                 log_std_bound: str = "tanh", network: str = "mlp"):
        super().__init__()
        self.trunk = trunk(obs_dim, hidden_sizes, norm, network)
        self.head = Linear(hidden_sizes[-1], 2 * act_dim)
        self.log_std_min, self.log_std_max, self.log_std_bound = log_std_min, log_std_max, log_std_bound

    def forward(self, obs: torch.Tensor) -> TanhNormal:
        # float(): under bf16 autocast the matmuls run in bf16, the distribution and its log-probs in float32.
        loc, log_std = self.head(self.trunk(obs)).float().chunk(2, dim=-1)  # (B, A) each
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
        self.head = Linear(hidden_sizes[-1], act_dim)
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
        # frozen: gradients flow to x only, the weight-gradient matmuls are skipped
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        in_dim, out_dim = weight.shape[-2:]
        if _for_inductor_cpu(x):
            if out_dim <= NARROW:
                return _dot_head(x, weight.transpose(-1, -2).unsqueeze(-3), bias)
            if in_dim <= NARROW:  # few inputs (a first layer on a small task): bias + sum_k x_k w_k
                with torch.autocast(x.device.type, enabled=False):
                    x, out = x.float(), bias
                    for k in range(in_dim):
                        out = out + x[..., k:k + 1] * weight[:, k:k + 1]
                    return out
            return _bias_apart(torch.bmm(x, weight), bias)
        return torch.baddbmm(bias, x, weight)


class QEnsemble(nn.Module):
    """`num_critics` Q networks evaluated together; forward returns Q values of shape (E, B), or (E, B, out_dim)
    with several outputs per member (a distributional critic's quantiles). With `norm`, each member normalizes
    its input and each hidden layer's output (after the ReLU), as CrossQ's critics. `network="residual"`: a
    residual trunk (`residual_trunk`) per member instead of the MLP."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], num_critics: int = 2,
                 norm: Norm = None, out_dim: int = 1, network: str = "mlp"):
        super().__init__()
        self.num_critics, self.out_dim = num_critics, out_dim
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

    def forward(self, obs: torch.Tensor, action: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Q values (E, B) or (E, B, out_dim). With `frozen`, no gradient reaches the weights (the actor loss
        needs only dQ/da)."""
        x = torch.cat([obs, action], dim=-1)  # (B, O + A)
        x = x.expand(self.num_critics, *x.shape)  # (E, B, O + A)
        if self.blocks is not None:  # [norm ->] stem -> blocks -> norm -> head
            if len(self.norms) == 2:
                x = self.norms[0](x, frozen)
            x = self.layers[0](x, frozen)
            for block in self.blocks:
                x = block(x, frozen)
            out = self.layers[1](self.norms[-1](x, frozen), frozen).float()
            return out.squeeze(-1) if self.out_dim == 1 else out
        for i, layer in enumerate(self.layers[:-1]):
            if self.norms is not None:
                x = self.norms[i](x, frozen)
            x = relu_(layer(x, frozen))
        if self.norms is not None:
            x = self.norms[-1](x, frozen)
        out = self.layers[-1](x, frozen).float()
        return out.squeeze(-1) if self.out_dim == 1 else out
