"""Return against wall time: a many-env recipe against the single-env default, whole train.py processes.

    python benchmarks/many_envs.py                                 # HalfCheetah-v5, seed 1: each variant in turn
    python benchmarks/many_envs.py --variants default many-envs --seeds 1 2 3
    python benchmarks/many_envs.py --report                        # the figures from the curves written before

Each run evaluates every --eval-every env steps (10 episodes) and prints a progress line after each evaluation;
the line's arrival, in seconds since the process started (imports and compiles included), is its wall time. The
single-env default runs --default-steps env steps (train.py --env ENV, nothing else); its final evaluation is the
target. A recipe's figure is the first wall time at which its evaluation reached that target. Curves go to
benchmarks/results/many_envs/<env>/<variant>/s<seed>/curve.csv (wall_seconds, env_steps, return_mean).
"""

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "many_envs"
# What each variant adds to `train.py --env ENV --seed S`; default: the single-env run a new user starts.
VARIANTS = {"default": [],
            "many-envs": ["--config", "many-envs"],
            "many-envs-no-stagger": ["--config", "many-envs", "--no-stagger-episodes"],
            "many-envs-envpool": ["--config", "many-envs", "--vector-mode", "envpool", "--no-stagger-episodes"]}
LINE = re.compile(r"step ([\d,]+)/[\d,]+ .*\| eval (-?[\d.]+)")


def run(env_id: str, variant: str, seed: int, steps: int, eval_every: int, extra: list[str], label: str) -> Path:
    out = RESULTS / env_id / label / f"s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "train.py"), "--env", env_id, "--seed", str(seed), *VARIANTS[variant],
               "--total-steps", str(steps), "--eval-every", str(eval_every), "--log-every", str(eval_every),
               "--checkpoint-every", "0", "--no-save-buffer", "--wandb", "disabled", "--no-tensorboard",
               "--run-dir", f"{tmp}/run", *extra]
        start = time.perf_counter()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}) as process:
            log = []
            for line in process.stdout:
                log.append(line)
                match = LINE.search(line)
                if match and int(match[1].replace(",", "")) % eval_every == 0:
                    rows.append((time.perf_counter() - start, int(match[1].replace(",", "")), float(match[2])))
        final = re.search(r"Final evaluation return: (-?[\d.]+)", "".join(log))
        if process.returncode != 0 or final is None:
            sys.exit(f"{variant} s{seed} failed:\n{''.join(log[-20:])}")
        rows.append((time.perf_counter() - start, steps, float(final[1])))
    (out / "log.txt").write_text("".join(log))
    with open(out / "curve.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["wall_seconds", "env_steps", "return_mean"])
        writer.writerows((f"{t:.1f}", s, f"{r:.1f}") for t, s, r in rows)
    return out


def curve(env_id: str, variant: str, seed: int) -> list[tuple[float, int, float]]:
    path = RESULTS / env_id / variant / f"s{seed}" / "curve.csv"
    if not path.exists():
        return []
    return [(float(r["wall_seconds"]), int(r["env_steps"]), float(r["return_mean"]))
            for r in csv.DictReader(open(path))]


def report(env_id: str, variants: list[str], seeds: list[int]) -> None:
    base = [c for c in (curve(env_id, "default", s) for s in seeds) if c]
    if not base:
        print(f"{env_id}: no default run yet")
        return
    target = statistics.mean(c[-1][2] for c in base)
    base_time = statistics.mean(c[-1][0] for c in base)
    print(f"{env_id}: the default's final return {target:.0f} (mean of {len(base)} seeds) in {base_time:.0f} s")
    for variant in variants:
        if variant == "default":
            continue
        for seed in seeds:
            rows = curve(env_id, variant, seed)
            if not rows:
                continue
            reached = next(((t, s) for t, s, r in rows if r >= target), None)
            best = max(rows, key=lambda row: row[2])
            when = (f"reached it at {reached[0]:.0f} s ({reached[1]:,} env steps; {base_time / reached[0]:.1f}x "
                    "sooner)" if reached else "did not reach it")
            print(f"  {variant} s{seed}: {when}; best {best[2]:.0f} at {best[0]:.0f} s; final {rows[-1][2]:.0f} "
                  f"at {rows[-1][0]:.0f} s ({rows[-1][1]:,} env steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--default-steps", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=200_000, help="env steps of the many-env runs")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--label", help="the results folder's name for a variant run with more train.py flags "
                        "(given after these; default: the variant's name)")
    parser.add_argument("--report", action="store_true", help="only the table, from the curves written before")
    args, extra = parser.parse_known_args()
    if not args.report:
        for seed in args.seeds:
            for variant in args.variants:
                steps = args.default_steps if variant == "default" else args.steps
                label = args.label or variant
                print(f"{label} s{seed}: {run(args.env, variant, seed, steps, args.eval_every, extra, label)}",
                      flush=True)
    report(args.env, [args.label] if args.label else args.variants, args.seeds)


if __name__ == "__main__":
    main()
