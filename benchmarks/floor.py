"""The arithmetic floor of one SAC or CrossQ update: matmul FLOPs per update over the GEMM rate this machine
reaches.

    python benchmarks/floor.py                      # HalfCheetah-v5 sizes: obs 17, action 6
    python benchmarks/floor.py --obs 3 --act 1      # Pendulum-v1
    python benchmarks/floor.py --obs 3 --act 1 --agent crossq   # CrossQ, an actor step every third update

Counts the FLOPs of every matmul in one update (batch B, hidden sizes H, E critics) as this package computes
it: the critic loss (actor on s', E target critics on s', E critics forward and backward), the actor loss
(actor forward, E critics forward and backward to the action only: the critic weights are detached), with
2*m*n*k FLOPs per (m x k) @ (k x n) product. CrossQ has no target critics: its critics take (s, a) and (s', a')
as one batch of 2B, and its actor loss comes every --policy-delay updates (counted as its share of each). Then
measures the GEMM rate at the update's own shapes and prints the time those FLOPs need at that rate: no real
update can be faster.
"""

import argparse
import statistics
import time

import torch


def mlp_flops(batch: int, sizes: list[int], weight_grads: bool, input_grad: bool, backward: bool) -> int:
    """FLOPs of an MLP's matmuls: forward, plus backward (input grads of inner layers, optional weight grads
    and optional input grad of the first layer)."""
    total = 0
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        fwd = 2 * batch * k * n
        total += fwd
        if backward:
            total += fwd if weight_grads else 0
            total += fwd if (i > 0 or input_grad) else 0
    return total


def update_flops(batch: int, obs: int, act: int, hidden: list[int], critics: int, agent: str = "sac",
                 policy_delay: int = 1) -> dict[str, int]:
    actor = [obs, *hidden, 2 * act]
    critic = [obs + act, *hidden, 1]
    actor_loss = {
        "actor forward + backward (weight grads)": mlp_flops(batch, actor, True, False, backward=True),
        "critics forward + backward to the action": critics * mlp_flops(batch, critic, False, True, backward=True),
    }
    if agent == "crossq":
        return {
            "actor on s' (no grad)": mlp_flops(batch, actor, False, False, backward=False),
            "critics on (s,a)+(s',a'), forward + backward": critics * mlp_flops(2 * batch, critic, True, False,
                                                                               backward=True),
            **{f"{name}, / {policy_delay}": flops // policy_delay for name, flops in actor_loss.items()},
        }
    return {
        "actor on s' (no grad)": mlp_flops(batch, actor, False, False, backward=False),
        "target critics on s' (no grad)": critics * mlp_flops(batch, critic, False, False, backward=False),
        "critics forward + backward (weight grads)": critics * mlp_flops(batch, critic, True, False, backward=True),
        **actor_loss,
    }


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, threads: int, seconds: float = 1.0) -> float:
    """GFLOP/s of (m x k) @ (k x n) at `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(20):
        a @ b
    runs = []
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            a @ b
            count += 1
        runs.append(2 * m * k * n * count / (time.perf_counter() - start) / 1e9)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--obs", type=int, default=17)
    parser.add_argument("--act", type=int, default=6)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--critics", type=int, default=2)
    parser.add_argument("--agent", choices=["sac", "crossq"], default="sac")
    parser.add_argument("--policy-delay", type=int, default=3, help="with --agent crossq: updates per actor step")
    args = parser.parse_args()
    delay = args.policy_delay if args.agent == "crossq" else 1
    parts = update_flops(args.batch, args.obs, args.act, args.hidden, args.critics, args.agent, delay)
    total = sum(parts.values())
    print(f"Matmul FLOPs of one {args.agent} update (batch {args.batch}, obs {args.obs}, action {args.act}, hidden "
          f"{args.hidden}, {args.critics} critics):")
    for name, flops in parts.items():
        print(f"  {name:<45} {flops / 1e6:8.1f} MFLOP")
    print(f"  {'total':<45} {total / 1e6:8.1f} MFLOP\n")
    print("| precision | threads | GEMM 256x256x256 (GFLOP/s) | floor of one update (ms) |\n|---|---|---|---|")
    h = args.hidden[0]
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for threads in (1, 2):
            rate = gemm_rate(args.batch, h, h, dtype, threads)
            print(f"| {name} | {threads} | {rate:.0f} | {total / rate / 1e6:.2f} |")


if __name__ == "__main__":
    main()
