"""What the agents' updates are built from, by composition: one fused Adam, the Polyak step, resets, and gradient
norms read at log time."""

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
def polyak_(target: list[torch.Tensor], source: list[torch.Tensor], tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, in place."""
    for t, s in zip(target, source):
        t.lerp_(s, tau)


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


def grad_norms(**groups) -> dict[str, torch.Tensor]:
    """`NAME_grad_norm`: the global L2 norm of each group's gradients as the last backward left them (no host
    sync), for the groups that have any. Read once per log interval rather than computed in every update."""
    norms = {}
    for name, params in groups.items():
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            norms[f"{name}_grad_norm"] = torch.nn.utils.get_total_norm(grads).detach()
    return norms
