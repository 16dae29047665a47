"""The arithmetic floor of one SAC or CrossQ update: each matmul's FLOPs over the GEMM rate this machine reaches at
that matmul's shape, summed.

    python benchmarks/floor.py                      # HalfCheetah-v5 sizes: obs 17, action 6
    python benchmarks/floor.py --obs 3 --act 1      # Pendulum-v1
    python benchmarks/floor.py --obs 3 --act 1 --agent crossq   # CrossQ, an actor step every third update
    python benchmarks/floor.py --agent crossq --critic-hidden 512 512 --policy-delay 1 --updates-per-step 2  # preset
    python benchmarks/floor.py --agent crossq --critic-hidden 512 512 --policy-delay 1 --value-bins 101  # its update
                                                                                  # with a categorical critic

Counts every matmul of one update (batch B, hidden sizes H, E critics) as this package computes it: the critic
loss (actor on s', E target critics on s', E critics forward and backward), the actor loss (actor forward, E critics
forward and backward to the action only: the critic weights are detached), with 2*m*n*k FLOPs per (m x k) @ (k x n)
product. CrossQ has no target critics: its critics take (s, a) and (s', a') as one batch of 2B, and its actor loss
comes every --policy-delay updates (counted as its share of each). Then times a GEMM of each shape (an ensemble's
as a batched matmul over its E members) on this machine, in each precision and thread count, and prints the time
those FLOPs need at those rates: no real update can be faster. Matmuls with a dimension under 32 (a first layer
of few inputs, a head of few outputs) are counted at the rate of the largest shape instead: their time is the
call's overhead, not arithmetic. --updates-per-step multiplies it, for the time an env step's updates take.
"""

import argparse
import collections
import statistics
import time

import torch


def mlp_matmuls(batch: int, sizes: list[int], members: int, weight_grads: bool, input_grad: bool,
                backward: bool) -> list[tuple[int, int, int, int]]:
    """(members, m, k, n) of each matmul of an MLP: forward, plus backward (input grads of inner layers, optional
    weight grads and optional input grad of the first layer)."""
    out = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((members, batch, k, n))
        if backward:
            if weight_grads:
                out.append((members, k, batch, n))  # x^T @ dy
            if i > 0 or input_grad:
                out.append((members, batch, n, k))  # dy @ W^T
    return out


def update_matmuls(batch: int, obs: int, act: int, actor_hidden: list[int], critic_hidden: list[int], critics: int,
                   agent: str = "sac", policy_delay: int = 1, value_bins: int = 0) -> dict[str, tuple[list, float]]:
    """name -> (matmuls, the share of updates that make them). A categorical critic (`value_bins`) outputs that
    many logits instead of one value."""
    actor = [obs, *actor_hidden, 2 * act]
    critic = [obs + act, *critic_hidden, value_bins or 1]
    actor_loss = {
        "actor forward + backward (weight grads)": (mlp_matmuls(batch, actor, 1, True, False, True), 1.0),
        "critics forward + backward to the action": (mlp_matmuls(batch, critic, critics, False, True, True), 1.0),
    }
    if agent == "crossq":
        return {
            "actor on s' (no grad)": (mlp_matmuls(batch, actor, 1, False, False, False), 1.0),
            "critics on (s,a)+(s',a'), forward + backward": (mlp_matmuls(2 * batch, critic, critics, True, False,
                                                                         True), 1.0),
            **{f"{name}, / {policy_delay}": (mm, 1.0 / policy_delay) for name, (mm, _) in actor_loss.items()},
        }
    return {
        "actor on s' (no grad)": (mlp_matmuls(batch, actor, 1, False, False, False), 1.0),
        "target critics on s' (no grad)": (mlp_matmuls(batch, critic, critics, False, False, False), 1.0),
        "critics forward + backward (weight grads)": (mlp_matmuls(batch, critic, critics, True, False, True), 1.0),
        **actor_loss,
    }


def gemm_seconds(members: int, m: int, k: int, n: int, dtype: torch.dtype, threads: int,
                 seconds: float = 0.3) -> float:
    """The median time of (members x m x k) @ (members x k x n) at `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(members, m, k, dtype=dtype), torch.randn(members, k, n, dtype=dtype)
    op = (lambda: torch.mm(a[0], b[0])) if members == 1 else (lambda: torch.bmm(a, b))
    for _ in range(10):
        op()
    runs = []
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            op()
            count += 1
        runs.append((time.perf_counter() - start) / count)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--obs", type=int, default=17)
    parser.add_argument("--act", type=int, default=6)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="the actor's and the critics'")
    parser.add_argument("--actor-hidden", type=int, nargs="+", help="the actor's, if not --hidden")
    parser.add_argument("--critic-hidden", type=int, nargs="+", help="the critics', if not --hidden")
    parser.add_argument("--critics", type=int, default=2)
    parser.add_argument("--agent", choices=["sac", "crossq"], default="sac")
    parser.add_argument("--policy-delay", type=int, default=3, help="with --agent crossq: updates per actor step")
    parser.add_argument("--updates-per-step", type=int, default=1)
    parser.add_argument("--value-bins", type=int, default=0, help="a categorical critic's bins (0: a scalar critic)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    args = parser.parse_args()
    delay = args.policy_delay if args.agent == "crossq" else 1
    actor_hidden, critic_hidden = args.actor_hidden or args.hidden, args.critic_hidden or args.hidden
    parts = update_matmuls(args.batch, args.obs, args.act, actor_hidden, critic_hidden, args.critics, args.agent,
                           delay, args.value_bins)
    shapes: collections.Counter = collections.Counter()
    for matmuls, share in parts.values():
        for shape in matmuls:
            shapes[shape] += share * args.updates_per_step
    total = sum(2 * e * m * k * n * count for (e, m, k, n), count in shapes.items())
    print(f"Matmul FLOPs of {args.updates_per_step} {args.agent} update(s) (batch {args.batch}, obs {args.obs}, "
          f"action {args.act}, actor {actor_hidden}, critics {critic_hidden} x {args.critics}"
          f"{f', {args.value_bins} value bins' if args.value_bins else ''}):")
    for name, (matmuls, share) in parts.items():
        flops = sum(2 * e * m * k * n for e, m, k, n in matmuls) * share * args.updates_per_step
        print(f"  {name:<45} {flops / 1e6:8.1f} MFLOP")
    print(f"  {'total':<45} {total / 1e6:8.1f} MFLOP\n")
    print("| precision | threads | the update's matmuls at this machine's GEMM rate for each shape (ms) | "
          "mean rate (GFLOP/s) |\n|---|---|---|---|")
    for name in args.precisions:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        for threads in (1, 2):
            timed = {shape: gemm_seconds(*shape, dtype, threads) for shape in shapes if min(shape[1:]) >= 32}
            largest = max(timed, key=lambda shape: shape[0] * shape[1] * shape[2] * shape[3])
            rate = 2 * largest[0] * largest[1] * largest[2] * largest[3] / timed[largest]
            floor = sum(timed[shape] * count if shape in timed else 2 * e * m * k * n * count / rate
                        for shape, count in shapes.items() for e, m, k, n in [shape])
            print(f"| {name} | {threads} | {floor * 1e3:.2f} | {total / floor / 1e9:.0f} |", flush=True)


if __name__ == "__main__":
    main()
