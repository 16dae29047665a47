"""Runs side by side: two default runs started together against the same two one after the other, and a default
run beside another busy process, all timed as whole processes.

    python benchmarks/side_by_side.py                  # two SAC runs of 3,000 Pendulum-v1 steps, 3 rounds
    python benchmarks/side_by_side.py --steps 5000 --rounds 2 --flags --agent crossq

Every run is `train.py --env Pendulum-v1 --total-steps STEPS` with no speed flag (so it picks its own threads),
no evaluation, checkpoints or wandb: together, both are started at once and the time is until the second ends; one
after the other, the sum of the two. Then one run beside a process that keeps one CPU busy (a Python loop), by
default and with --threads 1. Prints the machine and a Markdown table for docs/performance.md.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from throughput import describe_cpu  # noqa: E402

SPIN = "import time\nt = time.time()\nwhile time.time() - t < {seconds}: pass"


def command(steps: int, run_dir: str, flags: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--env", "Pendulum-v1", "--total-steps", str(steps),
            "--eval-every", "0", "--eval-episodes", "0", "--checkpoint-every", "0", "--no-save-buffer",
            "--wandb", "disabled", "--no-tensorboard", "--run-dir", run_dir, *flags]


def start(steps: int, flags: list[str], tmp: str, name: str) -> subprocess.Popen:
    return subprocess.Popen(command(steps, f"{tmp}/{name}", flags), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"train.py failed:\n{out[-2000:]}")
    return out


def together(steps: int, flags: list[str]) -> tuple[float, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        runs = [start(steps, flags, tmp, name) for name in ("a", "b")]
        outs = [finish(run) for run in runs]
        return time.perf_counter() - t, [speed_line(out) for out in outs]


def one_after_the_other(steps: int, flags: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for name in ("a", "b"):
            finish(start(steps, flags, tmp, name))
        return time.perf_counter() - t


def beside_a_busy_process(steps: int, flags: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        spinner = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=3600)])
        try:
            time.sleep(1.0)
            t = time.perf_counter()
            out = finish(start(steps, flags, tmp, "a"))
            return time.perf_counter() - t, speed_line(out)
        finally:
            spinner.kill()


def speed_line(out: str) -> str:
    return next((line for line in out.splitlines() if line.startswith("Speed:")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flags", nargs=argparse.REMAINDER, default=[], help="more train.py flags (last)")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{describe_cpu()}; {cpus} CPUs; {args.steps:,} steps a run; "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    seq, par, lines = [], [], []
    for _ in range(args.rounds):
        seq.append(one_after_the_other(args.steps, args.flags))
        took, speeds = together(args.steps, args.flags)
        par.append(took)
        lines += speeds
    busy, busy_line = beside_a_busy_process(args.steps, args.flags)
    pinned, _ = beside_a_busy_process(args.steps, [*args.flags, "--threads", "1"])
    print("| what | seconds (median over rounds) |\n|---|---|")
    print(f"| two runs one after the other | {statistics.median(seq):.1f} ({', '.join(f'{s:.1f}' for s in seq)}) |")
    print(f"| the same two started together | {statistics.median(par):.1f} ({', '.join(f'{s:.1f}' for s in par)}) |")
    print(f"| together / one after the other | {statistics.median(par) / statistics.median(seq):.2f} |")
    print(f"| one run beside a busy process, default threads | {busy:.1f} |")
    print(f"| one run beside a busy process, --threads 1 | {pinned:.1f} |")
    print("\nWhat the runs started together chose:\n" + "\n".join(sorted(set(lines))))
    print(f"Beside the busy process: {busy_line}")


if __name__ == "__main__":
    main()
