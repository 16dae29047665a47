"""Throughput benchmark: our train.py against Stable-Baselines3 SAC with the same hyperparameters.

    python benchmarks/throughput.py                       # Pendulum-v1 and HalfCheetah-v5, 3 alternating rounds
    python benchmarks/throughput.py --logging             # also: wandb offline against disabled (ours)
    python benchmarks/throughput.py --envs Pendulum-v1 --rounds 5 --ours-flags --precision bf16

Both sides: batch 256, 256x256 networks, one update per env step, 1,000 random steps first, buffer 1e6, no
evaluation during training, the same torch thread count. Env steps per second are measured once updates have
started (the random phase is excluded), for each round; the two sides alternate so that drift in the machine's
speed hits both. Also reported: the median time of one of our updates alone. Needs `pip install -e ".[bench]"`.
"""

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEARNING_STARTS = 1_000
LOG_EVERY = 500


def ours(env_id: str, steps: int, threads: int, extra: list[str], wandb: str = "disabled") -> float:
    """Env steps/s of train.py after learning starts (from its per-interval progress lines, first one skipped)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "train.py"), "--env", env_id, "--total-steps", str(steps),
               "--learning-starts", str(LEARNING_STARTS), "--batch-size", "256", "--buffer-size", "1000000",
               "--hidden-sizes", "256", "256", "--updates-per-step", "1", "--eval-every", "0",
               "--eval-episodes", "0", "--checkpoint-every", "0", "--no-save-buffer", "--threads", str(threads),
               "--log-every", str(LOG_EVERY), "--wandb", wandb, "--run-dir", f"{tmp}/run", *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    if out.returncode != 0:
        raise SystemExit(f"train.py failed:\n{out.stderr}")
    rates = [(int(m[1].replace(",", "")), float(m[2]))
             for m in re.finditer(r"step ([\d,]+)/[\d,]+ \| (\d+) steps/s", out.stderr)]
    # Intervals that lie wholly after learning starts, less the first (warm-up); equal lengths, so the
    # overall rate is the harmonic mean of the interval rates.
    after = [r for step, r in rates if step - LOG_EVERY >= LEARNING_STARTS + LOG_EVERY]
    return len(after) / sum(1.0 / r for r in after)


SB3_WORKER = """
import sys, time, torch, gymnasium as gym
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
env_id, steps, threads, learning_starts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
class Timer(BaseCallback):
    t0 = None
    def _on_step(self):
        if self.num_timesteps == learning_starts + 500 + 1:
            self.t0 = time.perf_counter()
        return True
timer = Timer()
model = SAC("MlpPolicy", gym.make(env_id), learning_starts=learning_starts, batch_size=256, buffer_size=1_000_000,
            train_freq=1, gradient_steps=1, policy_kwargs=dict(net_arch=[256, 256]), device="cpu", seed=0)
model.learn(steps, callback=timer)
print((steps - learning_starts - 500 - 1) / (time.perf_counter() - timer.t0))
"""


def sb3(env_id: str, steps: int, threads: int) -> float:
    out = subprocess.run([sys.executable, "-c", SB3_WORKER, env_id, str(steps), str(threads), str(LEARNING_STARTS)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"Stable-Baselines3 failed (pip install -e '.[bench]'):\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def update_time_us(env_id: str, threads: int, extra: list[str], repeats: int = 300) -> float:
    """Median wall time of one of our SAC updates (batch 256, 256x256), in microseconds, in a trainer's process."""
    code = f"""
import dataclasses, sys, time, statistics, torch
sys.path.insert(0, {str(ROOT)!r})
from pathwise.cli import parse_args
from pathwise.run import build_trainer
import tempfile
torch.set_num_threads({threads})
args = ["--env", {env_id!r}, "--batch-size", "256", "--hidden-sizes", "256", "256", "--wandb", "disabled",
        "--buffer-size", "10000", "--run-dir", tempfile.mkdtemp() + "/run", *{extra!r}]
config, _, _ = parse_args(args)
trainer = build_trainer(config)
trainer.collector.start()
trainer.config = dataclasses.replace(config, learning_starts=10**9)  # random actions only: no update yet
while len(trainer.buffer) < 2000:
    trainer.step()
agent, buffer = trainer.agent, trainer.buffer
times = []
# Timed after 2,000 updates, as in a run: Adam's moments have had time to decay (fresh ones time faster).
for i in range({repeats} + 2000):
    batch = buffer.sample(256)
    t = time.perf_counter()
    agent.update(batch)
    if i >= 2000:
        times.append(time.perf_counter() - t)
print(statistics.median(times) * 1e6)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"update timing failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    parser.add_argument("--steps", type=int, default=5_000, help="env steps per run (1,000 of them random)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--logging", action="store_true", help="also compare wandb offline with disabled")
    parser.add_argument("--ours-flags", nargs=argparse.REMAINDER, default=[], help="more train.py flags (last)")
    args = parser.parse_args()

    results = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
               "steps": args.steps, "flags": args.ours_flags, "envs": {}}
    print("| env | ours (env steps/s) | SB3 (env steps/s) | ratio | our update (median us) |")
    print("|---|---|---|---|---|")
    for env_id in args.envs:
        mine, theirs, offline = [], [], []
        for _ in range(args.rounds):
            mine.append(ours(env_id, args.steps, args.threads, args.ours_flags))
            if not args.skip_sb3:
                theirs.append(sb3(env_id, args.steps, args.threads))
            if args.logging:
                offline.append(ours(env_id, args.steps, args.threads, args.ours_flags, wandb="offline"))
        update = update_time_us(env_id, args.threads, args.ours_flags)
        ratio = f"{statistics.median(mine) / statistics.median(theirs):.2f}x" if theirs else "-"
        print(f"| {env_id} | {spread(mine)} | {spread(theirs) if theirs else '-'} | {ratio} | {update:.0f} |",
              flush=True)
        results["envs"][env_id] = {"ours": mine, "sb3": theirs, "update_us": update, "ours_offline": offline}
    if args.logging:
        print("\n| env | wandb disabled | wandb offline | offline / disabled |\n|---|---|---|---|")
        for env_id, r in results["envs"].items():
            print(f"| {env_id} | {spread(r['ours'])} | {spread(r['ours_offline'])} | "
                  f"{statistics.median(r['ours_offline']) / statistics.median(r['ours']):.3f} |")
    out = ROOT / "benchmarks" / "results" / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nraw numbers: {out}")


if __name__ == "__main__":
    main()
