"""Learning benchmark: SAC on Pendulum-v1, several seeds x 10,000 env steps, each evaluated deterministically.

    python benchmarks/learning.py                  # 5 seeds, 2 at a time, 1 torch thread each
    python benchmarks/learning.py --seeds 1 2 3 --steps 20000

Prints a Markdown table for docs/benchmarks.md. The bar: every seed >= -250 and the median >= -200.
"""

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_seed(seed: int, args, out: Path) -> dict:
    run_dir = out / f"seed{seed}"
    cmd = [sys.executable, str(ROOT / "train.py"), "--env", args.env, "--seed", str(seed),
           "--total-steps", str(args.steps), "--eval-every", "0", "--eval-episodes", "10",
           "--wandb", "disabled", "--threads", str(args.threads), "--run-dir", str(run_dir), *args.extra]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{result.stderr}")
    rows = list(csv.DictReader(open(run_dir / "evaluations.csv")))
    return {"seed": seed, "return": float(rows[-1]["return_mean"]), "std": float(rows[-1]["return_std"]),
            "wall": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda s: run_seed(s, args, Path(tmp)), args.seeds))
    returns = [r["return"] for r in results]
    print("| seed | eval return (10 episodes, deterministic) | wall time |\n|---|---|---|")
    for r in results:
        print(f"| {r['seed']} | {r['return']:.1f} +- {r['std']:.1f} | {r['wall']:.0f} s |")
    print(f"\nmedian {statistics.median(returns):.1f}, min {min(returns):.1f}, max {max(returns):.1f} "
          f"({args.env}, {args.steps:,} steps, {len(returns)} seeds)")
    ok = min(returns) >= -250 and statistics.median(returns) >= -200
    print("bar (every seed >= -250, median >= -200):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
