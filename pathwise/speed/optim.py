"""The agents' Adam made faster on a CPU, or capturable for CUDA graphs, by swapping the optimizer's class: the
same state, parameters and state_dict, another `step` and `zero_grad`."""

import sys

import torch

# The fused Adam kernel, called directly (as optimizer.step() does inside); None in a torch without it.
fused_adam_ = getattr(torch, "_fused_adam_", None)


class PlainAdam(torch.optim.Adam):
    """torch.optim.Adam that, loading a state saved by a run whose graphs stepped it, steps as an eager run does:
    not capturable, learning rates plain floats."""

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["capturable"] = False
            group["lr"] = float(group["lr"])


class FastAdam(PlainAdam):
    """A fused Adam (as `pathwise.agents.scaffold.adam` builds) stepped by the kernel `optimizer.step()` calls,
    `torch._fused_adam_`, on the same state, without torch.optim's per-call Python for options these optimizers
    never set; and gradients set to None without `zero_grad`'s bookkeeping. tests/test_speed.py holds it to
    `torch.optim.Adam` bit for bit. The first step, which creates the state, is torch's own; so is every step after
    the private op failed once (a torch release that changed it), which is said in one line."""

    private_op_works = True

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        groups, state = self.param_groups, self.state
        work = [[p for p in group["params"] if p.grad is not None] for group in groups]
        plain = closure is None and all(
            g["fused"] and not (g["capturable"] or g["amsgrad"] or g["maximize"] or g.get("decoupled_weight_decay"))
            for g in groups)
        if not (plain and FastAdam.private_op_works) or any(p not in state for params in work for p in params):
            return super().step(closure)
        for i, (group, params) in enumerate(zip(groups, work)):
            if not params:
                continue
            states = [state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            try:
                fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                            [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                            beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
            except (TypeError, RuntimeError) as e:  # the op changed: undo this group's count, step it publicly
                torch._foreach_sub_(steps, 1)
                FastAdam.private_op_works = False
                print(f"torch._fused_adam_ failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); Adam steps "
                      "through torch.optim from now on.", file=sys.stderr, flush=True)
                self._public_step(groups[i:])
                return None
        return None

    def _public_step(self, groups: list[dict]) -> None:
        """torch.optim.Adam.step on `groups` alone (the ones not yet stepped)."""
        everything = self.param_groups
        try:
            self.param_groups = groups
            super().step()
        finally:
            self.param_groups = everything


class CapturableAdam(torch.optim.Adam):
    """Adam as a CUDA graph needs it: capturable, each learning rate a device tensor that annealing fills in place
    (so that the new rate reaches the graph), and gradients zeroed in place, so that all of an agent's graphs
    accumulate into the same gradient tensors (which `grad_norms` reads). Loading a state saved by a run that
    stepped another way puts these settings back."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=False)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        make_capturable_(self)


def make_capturable_(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=group["params"][0].device)
