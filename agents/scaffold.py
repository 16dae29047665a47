"""What the agents' updates are built from, by composition: one fused Adam, the Polyak step, compiling a loss,
bf16 autocast, and gradient norms read at log time."""

import contextlib

import torch


def adam(*groups: dict) -> torch.optim.Adam:
    """One fused Adam over parameter groups ({"params": [...], "lr": ..., other Adam options}). Groups with the
    same options are merged, in order of first appearance: the fused step runs one kernel per group, and each
    Adam moment is per parameter anyway."""
    merged: dict[tuple, list[torch.Tensor]] = {}
    for group in groups:
        options = tuple(sorted((k, v) for k, v in group.items() if k != "params"))
        merged.setdefault(options, []).extend(group["params"])
    return torch.optim.Adam([{"params": params, **dict(options)} for options, params in merged.items()], fused=True)


@torch.no_grad()
def adam_step_(optimizer: torch.optim.Adam) -> None:
    """`optimizer.step()` for an Adam that `adam` built: the same fused kernel on the same state, without
    torch.optim's per-call Python (for options these optimizers never set), which cost 50-120 us of a 1.5-2 ms
    update on a CPU. The first step, which creates the state, and every step on a GPU take `optimizer.step()`.
    `torch._fused_adam_` is torch's own op, not public API: tests/test_scaffold.py holds it to `optimizer.step()`
    bit for bit."""
    groups, state = optimizer.param_groups, optimizer.state
    plain = all(g["fused"] and not (g["capturable"] or g["amsgrad"] or g["maximize"] or g.get("decoupled_weight_decay"))
                for g in groups)
    work = [[p for p in group["params"] if p.grad is not None] for group in groups]
    if not (plain and groups[0]["params"][0].is_cpu) or any(p not in state for params in work for p in params):
        optimizer.step()  # on a GPU as measured there; on a CPU the first step, which creates the state
        return
    for group, params in zip(groups, work):
        if not params:
            continue
        states = [state[p] for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                           [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                           beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


@torch.no_grad()
def polyak_(target: list[torch.Tensor], source: list[torch.Tensor], tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, in place, as one fused op over all tensors."""
    torch._foreach_lerp_(target, source, tau)


def optimizers(agent) -> list[torch.optim.Optimizer]:
    """The agent's optimizers: its attributes that are one."""
    return [o for o in vars(agent).values() if isinstance(o, torch.optim.Optimizer)]


@torch.no_grad()
def reset_(agent, fresh, keep: float = 0.0) -> None:
    """Reset `agent`'s networks towards `fresh`, a newly built agent of the same kind (Nikishin et al. 2022): a full
    reset at keep = 0, else shrink and perturb (Ash and Adams 2020), every float tensor of each network (weights,
    targets, running statistics) becoming keep * old + (1 - keep) * fresh; integer state (counters) is taken from
    `fresh` at a full reset only. The optimizers forget the networks' Adam moments. The temperature, its Adam
    moments and the update count are kept, as the replay buffer is: what was learned about the data stays."""
    modules = [(name, m) for name, m in vars(agent).items() if isinstance(m, torch.nn.Module)]
    for name, module in modules:
        fresh_state = getattr(fresh, name).state_dict()
        for key, tensor in module.state_dict(keep_vars=True).items():
            new = fresh_state[key]
            if tensor.is_floating_point():
                tensor.lerp_(new, 1.0 - keep)
            elif keep == 0.0:
                tensor.copy_(new)
    params = {p for _, m in modules for p in m.parameters()}
    for optimizer in optimizers(agent):
        for p in params:
            for value in optimizer.state.get(p, {}).values():
                value.zero_()  # in place, as a fresh Adam's: a CUDA graph keeps stepping these same tensors


def train_mode_(modules: list[torch.nn.Module], mode: bool) -> None:
    """`module.train(mode)` for a network listed once as `list(module.modules())`: the same flags set, without
    nn.Module.train's recursion, which cost 25-40 us a call for CrossQ's networks, four calls an actor step."""
    for module in modules:
        object.__setattr__(module, "training", mode)  # a plain attribute: nn.Module.__setattr__ only adds checks


def zero_grad_(optimizer: torch.optim.Optimizer) -> None:
    """Gradients to None, or, for an optimizer a CUDA graph steps (capturable), to zero in place: then each of an
    agent's graphs accumulates into the same gradient tensors, which `grad_norms` reads. To None as
    `optimizer.zero_grad()` does, without its per-call bookkeeping (about 50 us of a 1.9 ms CPU update)."""
    if optimizer.param_groups[0]["capturable"]:
        optimizer.zero_grad(set_to_none=False)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def compiled(fn, device: torch.device):
    """`fn` under torch.compile (a loss: its forward, and through AOTAutograd its backward; or acting). Random
    draws fall back to eager's generator, so a compiled run samples the same numbers from the same seed; on a CPU
    the code that calls the kernels is C++ (inductor's cpp_wrapper), not Python: 4-5% of a compiled update. The
    options are given to this compile alone, not set for the process."""
    cpu = {"cpp_wrapper": True} if device.type == "cpu" else {}
    return torch.compile(fn, options={"fallback_random": True, **cpu})


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 matmuls under precision "bf16"; weights, losses and optimizer state stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def grad_norms(**groups) -> dict[str, torch.Tensor]:
    """`NAME_grad_norm`: the global L2 norm of each group's gradients as the last backward left them (no host
    sync), for the groups that have any. Read once per log interval rather than computed in every update, where
    it cost 4% of SAC's update on a CPU."""
    norms = {}
    for name, params in groups.items():
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            norms[f"{name}_grad_norm"] = torch.nn.utils.get_total_norm(grads).detach()
    return norms
