"""What a change to the recipe costs per update: CrossQ at the `sample-efficient` preset's shapes, variants alternated.

    python benchmarks/update_time.py                          # a scalar critic (0 value bins) against 101 bins
    python benchmarks/update_time.py --variants 0 101 101+wn 201 201+wn   # +wn: with weight normalization
    python benchmarks/update_time.py --variants 0 51 101 --precision fp32 --no-compile --rounds 3

Each variant in a fresh process per round, the rounds alternating: the preset's agent (critics 512 x 512, actor
256 x 256, an actor step at every update; HalfCheetah's and Walker2d's 17 observations and 6 actions; batch 256)
put in place by the speed layer as a run does, 200 updates of warm-up, then the median of 30 blocks of 6 updates.
Prints the CPU's bf16 support with the table.
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import statistics, sys, time, torch
sys.path.insert(0, {root!r})
from pathwise.agents.batch import Batch
from pathwise.agents.crossq import CrossQConfig
from pathwise.speed import Plan, accelerate, machine
machine.configure_cpu({threads})
config = CrossQConfig(critic_hidden_sizes=(512, 512), policy_delay=1, value_bins={bins},
                      weight_norm={weight_norm})
torch.manual_seed(0)
agent = config.make_agent(17, 6, torch.device("cpu"))
accelerate(agent, Plan.of("cpu", precision={precision!r}, compile={compile}, fast_kernels=True))
g = torch.Generator().manual_seed(0)
batches = [Batch(torch.randn(256, 17, generator=g), torch.rand(256, 6, generator=g) * 2 - 1,
                 torch.randn(256, generator=g), torch.randn(256, 17, generator=g), torch.zeros(256),
                 torch.full((256,), 0.99)) for _ in range(6)]
for i in range(200):
    agent.update(batches[i % 6])
times = []
for _ in range(30):
    start = time.perf_counter()
    for batch in batches:
        agent.update(batch)
    times.append((time.perf_counter() - start) / 6)
print(statistics.median(times) * 1e3)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["0", "101"],
                        help="value bins (0: a scalar critic), +wn for weight normalization, e.g. 101+wn")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pathwise.speed.machine import native_bf16

    shapes = {}  # variant -> (value bins, weight normalization)
    for variant in args.variants:
        bins, _, extra = variant.partition("+")
        if not bins.isdigit() or extra not in ("", "wn"):
            parser.error(f"a variant is value bins with an optional +wn, e.g. 101+wn; got {variant!r}")
        shapes[variant] = int(bins), extra == "wn"
    times: dict[str, list[float]] = {variant: [] for variant in args.variants}
    for _ in range(args.rounds):
        for variant, (bins, weight_norm) in shapes.items():
            code = WORKER.format(root=str(ROOT), threads=args.threads, bins=bins, weight_norm=weight_norm,
                                 precision=args.precision, compile=args.compile)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            times[variant].append(float(out.stdout.strip().splitlines()[-1]))
    native, name = native_bf16()
    cpu = f"native bf16 ({name})" if native else "no native bf16"
    print(f"CPU: {cpu}; {args.precision}, {'compiled' if args.compile else 'eager'}, {args.threads} thread(s)\n\n"
          "| value bins (+wn: weight norm) | ms per update, per round |\n|---|---|")
    for variant, values in times.items():
        print(f"| {variant} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
