"""Fast kernels for the agents' layers and losses, each equal to the definition it replaces in agents/ (the tests
in tests/test_speed.py hold them to it), put in place by swapping a module's class for a subclass here.

- Batch renormalization and TQC's quantile Huber loss with their backward passes written out: autograd through
  the textbook formulas makes many full passes over the activations each way.
- ReLU in place (the linear layer before it does not need its output for its backward).
- Under torch.compile on a CPU, layers written for inductor's CPU kernels: a head of at most NARROW outputs (and a
  critic's first layer of at most NARROW inputs) as products and sums that inductor fuses into the kernels around
  them, where a oneDNN matmul costs about the same however few its FLOPs; and the other layers' biases added
  apart from the matmul, in float32, fused into the next kernel. Not under torch.export: an exported policy keeps
  its matmuls (Gemm in ONNX), for the runtime that reads it.

Timings of each choice, by CPU and torch version: docs/performance.md.
"""

import torch
from torch import nn

from pathwise.agents.networks import BatchRenorm, EnsembleLinear

NARROW = 8


class _BatchRenormTrain(torch.autograd.Function):
    """BatchRenorm.forward with train=True, forward and backward written out over dim -2.

    y = ((x - m) / s * r + d) * w + b = (x - m) * a + c with a = r w / s and c = d w + b, per feature. Returns
    y and the batch's mean and biased variance (for the running statistics, without gradient)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, warm, eps, r_max, d_max):
        mean = x.mean(dim=-2, keepdim=True)
        centered = x - mean
        # two plain passes: torch.var's Welford reduction over dim -2 alone was many times slower on a CPU
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


class FastBatchRenorm(BatchRenorm):
    """BatchRenorm with its training forward and backward written out, and its eval forward one multiply-add."""

    def forward(self, x: torch.Tensor, train: bool = False, frozen: bool = False) -> torch.Tensor:
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        x = x.to(self.running_mean.dtype)
        if not train:  # (x - m) / s * w + b = x * a + c, a and c per feature
            scale = torch.rsqrt(self.running_var + self.eps) * weight
            return torch.addcmul(bias - self.running_mean * scale, x, scale)
        warm = self.steps >= self.warmup_steps
        y, mean, var = _BatchRenormTrain.apply(x, weight, bias, self.running_mean, self.running_var, warm,
                                               self.eps, self.r_max, self.d_max)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
            self.steps.add_(1)
        return y


class _QuantileHuber(torch.autograd.Function):
    """pathwise.agents.tqc.quantile_huber_loss with its gradient taken in the same passes over the (E, B, N, T)
    differences, the largest tensors of TQC's update. With u = atom - quantile and c = min(|u|, 1):
    Huber_1(u) = c (|u| - c / 2), and its derivative is clamp(u, -1, 1)."""

    @staticmethod
    def forward(ctx, quantiles, target):
        n = quantiles.shape[-1]
        tau = (torch.arange(n, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / n  # (N,)
        delta = target[None, :, None, :] - quantiles[..., None]  # (E, B, N, T)
        weight = torch.where(delta < 0, 1.0 - tau[:, None], tau[:, None])  # |tau - 1{u < 0}|
        size = delta.numel()
        abs_delta = delta.abs()
        clipped = abs_delta.clamp(max=1.0)
        loss = (weight * clipped * (abs_delta - 0.5 * clipped)).sum() / size
        # d loss / d quantile = -sum over atoms of weight * clamp(u, -1, 1), over the number of terms
        ctx.save_for_backward((weight * delta.clamp_(-1.0, 1.0)).sum(dim=-1) / -size)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad_loss * grad, None


def quantile_huber_loss(quantiles: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _QuantileHuber.apply(quantiles, target.detach())


class _ReLUSavingOutput(torch.autograd.Function):
    """ReLU whose backward multiplies by the sign of the output it saved (1 where positive, else 0): no boolean
    tensor anywhere in the graph. Left to itself, torch.compile's partitioner saves the mask `x <= 0` for the
    backward where the output is not otherwise kept (the critics' forward in the actor loss), and inductor's CPU
    kernels write boolean tensors many times slower than eager does. With the sign, what is saved is a float
    tensor, and the product fuses into the neighbouring backward kernels."""

    @staticmethod
    def forward(ctx, x):
        out = x.relu()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out.sign()


def for_inductor_cpu(x: torch.Tensor) -> bool:
    """Whether layers are written for inductor's CPU kernels: compiling (not exporting) for a CPU tensor."""
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting() and x.is_cpu


class FastReLU(nn.ReLU):
    """ReLU in place in eager mode; under torch.compile on a CPU, one whose backward needs no boolean mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReLUSavingOutput.apply(x) if for_inductor_cpu(x) else x.relu_()


def _dot_head(x: torch.Tensor, weight_rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (..., in) against each row of weight_rows (..., out, in): (..., out), in float32."""
    with torch.autocast(x.device.type, enabled=False):
        return (x.float().unsqueeze(-2) * weight_rows).sum(-1) + bias


def _bias_apart(product: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A matmul's product plus its bias as a separate float32 add, which inductor fuses into the next kernel."""
    return product.float() + bias


class InductorLinear(nn.Linear):
    """nn.Linear; under torch.compile on a CPU, a head of at most NARROW outputs is a dot product per output and
    any other layer adds its bias apart from the matmul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not for_inductor_cpu(x):
            return super().forward(x)
        if self.out_features <= NARROW:
            return _dot_head(x, self.weight, self.bias)
        return _bias_apart(x @ self.weight.t(), self.bias)


class InductorEnsembleLinear(EnsembleLinear):
    """EnsembleLinear; under torch.compile on a CPU, narrow heads and first layers written out, biases apart."""

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        if not for_inductor_cpu(x):
            return super().forward(x, frozen)
        weight, bias = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        in_dim, out_dim = weight.shape[-2:]
        if out_dim <= NARROW:
            return _dot_head(x, weight.transpose(-1, -2).unsqueeze(-3), bias)
        if in_dim <= NARROW:  # few inputs (a first layer on a small task): bias + sum_k x_k w_k
            with torch.autocast(x.device.type, enabled=False):
                x, out = x.float(), bias
                for k in range(in_dim):
                    out = out + x[..., k:k + 1] * weight[:, k:k + 1]
                return out
        return _bias_apart(torch.bmm(x, weight), bias)


def swap_layers(modules: list[nn.Module], inductor: bool) -> None:
    """Each layer of `modules` (and their submodules) that has a fast kernel here becomes it, in place: the same
    parameters and state_dict, another forward. `inductor`: also the layers written for inductor's CPU kernels."""
    swaps = {BatchRenorm: FastBatchRenorm, nn.ReLU: FastReLU}
    if inductor:
        swaps.update({nn.Linear: InductorLinear, EnsembleLinear: InductorEnsembleLinear})
    for module in modules:
        for layer in module.modules():
            if type(layer) in swaps:
                layer.__class__ = swaps[type(layer)]
