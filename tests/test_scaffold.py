"""What the agents' updates are built from."""

import copy

import torch

from agents.scaffold import adam, adam_step_


def test_adam_step_is_optimizer_step_bit_for_bit():
    # Two groups at different learning rates, a parameter without a gradient on some steps, a learning rate changed
    # between steps (as annealing does), and the state a checkpoint would save.
    torch.manual_seed(0)
    params = [torch.randn(shape, requires_grad=True) for shape in ((5, 3), (3,), (4,))]
    twins = [copy.deepcopy(p) for p in params]
    reference = adam({"params": params[:2], "lr": 1e-2}, {"params": params[2:], "lr": 3e-3})
    ours = adam({"params": twins[:2], "lr": 1e-2}, {"params": twins[2:], "lr": 3e-3})
    full_steps = []
    ours.step = lambda: full_steps.append(torch.optim.Adam.step(ours))
    for step in range(6):
        grads = [torch.randn_like(p) for p in params]
        for optimizer, tensors, take in ((reference, params, lambda o: o.step()), (ours, twins, adam_step_)):
            optimizer.zero_grad()
            for p, g in zip(tensors, grads):
                if not (step in (2, 3) and p is tensors[1]):
                    p.grad = g.clone()
            if step == 4:
                optimizer.param_groups[0]["lr"] = 5e-3
            take(optimizer)
    for p, q in zip(params, twins):
        assert torch.equal(p, q)
    a, b = reference.state_dict()["state"], ours.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[i][k], b[i][k]) for i in a for k in a[i])
    assert ours.state[twins[1]]["step"] == 4  # stepped only when it had a gradient
    assert len(full_steps) == 1  # the first, which created the state; then the fused kernel alone
