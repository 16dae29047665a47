"""Throughput benchmark: our train.py against Stable-Baselines3 and SBX with the same hyperparameters.

    python benchmarks/throughput.py                       # SAC on Pendulum-v1 and HalfCheetah-v5 against SB3
    python benchmarks/throughput.py --agents sac crossq td3 --sbx-python ~/sbx-venv/bin/python
    python benchmarks/throughput.py --agents crossq --envs Pendulum-v1 --updates-per-step 4 --sbx-python ...
    python benchmarks/throughput.py --logging             # also: wandb offline against disabled (ours)
    python benchmarks/throughput.py --agents sac crossq --precisions fp32 bf16 --sbx-python ...  # ours in both
    python benchmarks/throughput.py --agents sac --precisions bf16 --compile both   # ours eager and compiled
    python benchmarks/throughput.py --device cuda --envs HalfCheetah-v5 --compile both --cuda-graph both --skip-sb3
    python benchmarks/throughput.py --whole --steps 10000 --agents sac crossq --envs Pendulum-v1 --skip-sb3 \
        --sbx-python ~/sbx-venv/bin/python            # whole processes at our defaults against SBX's

By default our side runs with no speed flag (precision, compile and threads its own choice, which it prints), the
peers with --threads torch threads (JAX takes its own). `--whole` times whole processes, from start to exit
(imports, torch.compile and JAX's compilation included) instead of env steps/s once updates have started.

Every side: batch 256, 256x256 networks (CrossQ's critics too), --updates-per-step updates per env step (1), 1,000
random steps first, buffer 1e6, no evaluation during training, the same thread count. Env steps per second are
measured once updates have started (the random phase is excluded), for each round; the sides alternate so that
drift in the machine's speed hits all. Stable-Baselines3 runs SAC and TD3 (`pip install -e ".[bench]"`). SBX, the
JAX version, runs SAC, TD3 and CrossQ from its own virtual environment, as a user would install it:

    python -m venv ~/sbx-venv && ~/sbx-venv/bin/pip install torch==2.13.0 && \\
        ~/sbx-venv/bin/pip install sbx-rl "jax[cpu]" "gymnasium[mujoco]"

Also reported: the median time of one of our updates alone (on a GPU, from launch to the end of its kernels).
"""

import argparse
import json
import os
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


SPEED_LINES: set[str] = set()  # what our side chose, as it printed it


def ours(env_id: str, steps: int, threads: int | None, extra: list[str], wandb: str = "disabled",
         whole: bool = False, cold: bool = False) -> float:
    """Env steps/s of train.py after learning starts (from its per-interval progress lines, first one skipped), or
    with `whole`, the seconds of the whole process. `extra`: the agent's flags and any others. `cold`: with an
    empty inductor cache, as the first run on a machine has."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "train.py"), "--env", env_id, "--total-steps", str(steps),
               "--learning-starts", str(LEARNING_STARTS), "--batch-size", "256", "--buffer-size", "1000000",
               "--eval-every", "0", "--eval-episodes", "0", "--checkpoint-every", "0", "--no-save-buffer",
               *(["--threads", str(threads)] if threads else []),
               "--log-every", str(LOG_EVERY), "--wandb", wandb, "--run-dir", f"{tmp}/run", *extra]
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{tmp}/inductor"} if cold else None
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env)
        took = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"train.py failed:\n{out.stderr}")
    SPEED_LINES.update(line for line in out.stdout.splitlines() if line.startswith("Speed:"))
    if whole:
        return took
    rates = [(int(m[1].replace(",", "")), float(m[2]))
             for m in re.finditer(r"step ([\d,]+)/[\d,]+ \| (\d+) steps/s", out.stderr)]
    # Intervals that lie wholly after learning starts, less the first (warm-up); equal lengths, so the
    # overall rate is the harmonic mean of the interval rates.
    after = [r for step, r in rates if step - LOG_EVERY >= LEARNING_STARTS + LOG_EVERY]
    if not after:
        raise SystemExit(f"--steps {steps} leaves no timed interval: give at least "
                         f"{LEARNING_STARTS + 2 * LOG_EVERY} (random steps, a warm-up interval, a timed one).")
    return len(after) / sum(1.0 / r for r in after)


# Each agent's settings on every side: batch 256, 256x256 networks (CrossQ's critics too), one update per env step
# unless --updates-per-step says otherwise; CrossQ with its policy delay of 3, TD3 with its delay of 2.
OUR_FLAGS = {"sac": ["--agent", "sac", "--hidden-sizes", "256", "256"],
             "td3": ["--agent", "td3", "--hidden-sizes", "256", "256"],
             "crossq": ["--agent", "crossq", "--actor-hidden-sizes", "256", "256", "--critic-hidden-sizes", "256",
                        "256"]}
PEER_WORKER = """
import sys, time, torch, gymnasium as gym
package, agent, env_id, steps, threads, learning_starts, updates = sys.argv[1:]
steps, threads, learning_starts, updates = int(steps), int(threads), int(learning_starts), int(updates)
torch.set_num_threads(threads)
if package == "sbx":
    import sbx as lib
    from stable_baselines3.common.callbacks import BaseCallback
else:
    import stable_baselines3 as lib
    from stable_baselines3.common.callbacks import BaseCallback
class Timer(BaseCallback):
    t0 = None
    def _on_step(self):
        if self.num_timesteps == learning_starts + 500 + 1:
            self.t0 = time.perf_counter()
        return True
net_arch = dict(pi=[256, 256], qf=[256, 256])
cls = {"sac": lib.SAC, "td3": lib.TD3, "crossq": getattr(lib, "CrossQ", None)}[agent]
kwargs = dict(learning_starts=learning_starts, batch_size=256, buffer_size=1_000_000, train_freq=1,
              gradient_steps=updates, policy_kwargs=dict(net_arch=net_arch), seed=0)
if package == "sb3":
    kwargs["device"] = "cpu"
timer = Timer()
model = cls("MlpPolicy", gym.make(env_id), **kwargs)
model.learn(steps, callback=timer)
print((steps - learning_starts - 500 - 1) / (time.perf_counter() - timer.t0))
"""


def peer(package: str, python: str, agent: str, env_id: str, steps: int, threads: int, updates: int,
         whole: bool = False) -> float:
    """Env steps/s of Stable-Baselines3 (package "sb3") or SBX ("sbx", run by `python`) after learning starts, or
    with `whole`, the seconds of the whole process."""
    t = time.perf_counter()
    out = subprocess.run([python, "-c", PEER_WORKER, package, agent, env_id, str(steps), str(threads),
                          str(LEARNING_STARTS), str(updates)], capture_output=True, text=True)
    took = time.perf_counter() - t
    if out.returncode != 0:
        hint = "--sbx-python: a virtual environment with sbx-rl" if package == "sbx" else "pip install -e '.[bench]'"
        raise SystemExit(f"{package} failed ({hint}):\n{out.stderr[-2000:]}")
    return took if whole else float(out.stdout.strip().splitlines()[-1])


def update_time_us(env_id: str, threads: int, extra: list[str], repeats: int = 600) -> float:
    """Median wall time of one of our updates (batch 256; `extra`: the agent's flags), in microseconds, in a
    trainer's process: the median over blocks of 6 consecutive updates of the block's mean, so that every block
    holds whole policy-delay cycles (TD3's 2, CrossQ's 3: critic-only updates and actor updates alike)."""
    code = f"""
import dataclasses, sys, time, statistics, torch
sys.path.insert(0, {str(ROOT)!r})
from pathwise.cli import parse_args
from pathwise.run import build_trainer
import tempfile
torch.set_num_threads({threads})
args = ["--env", {env_id!r}, "--batch-size", "256", "--wandb", "disabled",
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
sync = torch.cuda.synchronize if trainer.device.type == "cuda" else lambda: None
for i in range({repeats} + 2000):
    batch = buffer.sample(256)
    sync()
    t = time.perf_counter()
    agent.update(batch)
    sync()
    if i >= 2000:
        times.append(time.perf_counter() - t)
print(statistics.median(sum(times[i:i + 6]) / 6 for i in range(0, len(times), 6)) * 1e6)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"update timing failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def mode_flags(precision: str, compile: str, graph: bool) -> list[str]:
    """Our side's flags for a row: none for auto."""
    return [*(["--precision", precision] if precision != "auto" else []),
            *({"on": ["--compile"], "off": ["--no-compile"]}.get(compile, [])), *(["--cuda-graph"] if graph else [])]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}x" if a and b else "-"


def describe_cpu() -> str:
    """The CPU's name and its bf16 support as torch sees it (held to AVX2 by ATEN_CPU_CAPABILITY and
    ONEDNN_MAX_CPU_ISA, it is answered as an AVX2 CPU)."""
    sys.path.insert(0, str(ROOT))
    from pathwise.speed.machine import native_bf16

    name = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                    name)
    native, kind = native_bf16()
    held = {k: v for k, v in os.environ.items() if k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "XLA_FLAGS")}
    return f"{name}; {'native bf16: ' + kind if native else kind}" + (f"; held by {held}" if held else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["sac"], choices=list(OUR_FLAGS))
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    parser.add_argument("--steps", type=int, default=5_000, help="env steps per run (1,000 of them random)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2,
                        help="the peers' torch threads, and ours with --our-threads [default: 2]")
    parser.add_argument("--our-threads", action="store_true",
                        help="give our side --threads THREADS instead of letting it choose")
    parser.add_argument("--updates-per-step", type=int, default=1)
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                        help="our side's --precision, a row each (auto: no flag); the peers run in float32")
    parser.add_argument("--compile", nargs="+", choices=["auto", "off", "on"], default=["auto"],
                        help="our side with --compile (on), --no-compile (off) or neither (auto): a row each")
    parser.add_argument("--cuda-graph", choices=["off", "on", "both"], default="off",
                        help="our side with CUDA graphs (--cuda-graph; a GPU only), without, or both: a row each")
    parser.add_argument("--device", default="cpu", help="our side's --device (the peers run on the CPU)")
    parser.add_argument("--whole", action="store_true",
                        help="time whole processes (seconds, imports and compilation included), not env steps/s")
    parser.add_argument("--cold", action="store_true",
                        help="our side with inductor's cache empty at every run, as on a machine's first run")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--sbx-python", help="the Python of a virtual environment with sbx-rl: SBX runs too")
    parser.add_argument("--logging", action="store_true", help="also compare wandb offline with disabled")
    parser.add_argument("--ours-flags", nargs=argparse.REMAINDER, default=[], help="more train.py flags (last)")
    args = parser.parse_args()

    our_threads = args.threads if args.our_threads else None
    machine = f"{describe_cpu()}; {args.threads} threads (peers)" + (", ours too" if our_threads else "")
    machine += "; inductor's cache empty at each of our runs" if args.cold else ""
    if args.device.startswith("cuda"):
        import torch

        machine += f", {torch.cuda.get_device_name(torch.device(args.device))}"
    print(machine, time.strftime("%Y-%m-%d %H:%M"))
    results = {"machine": machine, "device": args.device, "whole": args.whole,
               "steps": args.steps, "updates_per_step": args.updates_per_step, "flags": args.ours_flags,
               "runs": {}}
    unit = "seconds, whole process" if args.whole else "env steps/s"
    print(f"| agent | env | ours ({unit}) | SBX | SBX / ours | SB3 | SB3 / ours | our update (us) |" if args.whole
          else f"| agent | env | ours ({unit}) | SBX | ours / SBX | SB3 | ours / SB3 | our update (us) |")
    print("|---|---|---|---|---|---|---|---|")
    graphs = {"off": [False], "on": [True], "both": [False, True]}[args.cuda_graph]
    # our side's rows: (precision, compile, CUDA graphs)
    modes = [(p, c, g) for p in args.precisions for c in args.compile for g in graphs]
    for agent in args.agents:
        flags = [*OUR_FLAGS[agent], "--updates-per-step", str(args.updates_per_step), "--device", args.device,
                 *args.ours_flags]
        for env_id in args.envs:
            mine = {mode: [] for mode in modes}
            sbx, sb3, offline = [], [], []
            for _ in range(args.rounds):
                for mode in modes:
                    mine[mode].append(ours(env_id, args.steps, our_threads, [*flags, *mode_flags(*mode)],
                                           whole=args.whole, cold=args.cold))
                if args.sbx_python:
                    sbx.append(peer("sbx", args.sbx_python, agent, env_id, args.steps, args.threads,
                                    args.updates_per_step, whole=args.whole))
                if not args.skip_sb3 and agent != "crossq":  # Stable-Baselines3 itself has no CrossQ
                    sb3.append(peer("sb3", sys.executable, agent, env_id, args.steps, args.threads,
                                    args.updates_per_step, whole=args.whole))
                if args.logging:  # in the first precision: its row compares offline with disabled
                    offline.append(ours(env_id, args.steps, our_threads, [*flags, *mode_flags(*modes[0])],
                                        wandb="offline", whole=args.whole))
            for (precision, compile, graph), rates in mine.items():
                update = update_time_us(env_id, args.threads, [*flags, *mode_flags(precision, compile, graph)])
                words = [w for w in (f"--precision {precision}" if precision != "auto" else "",
                                     {"on": "--compile", "off": "--no-compile"}.get(compile, ""),
                                     "CUDA graph" if graph else "") if w]
                name = f"{agent} ({', '.join(words)})" if words else agent
                # how many times faster we are: fewer seconds, or more env steps/s
                faster_sbx, faster_sb3 = ((ratio(sbx, rates), ratio(sb3, rates)) if args.whole
                                          else (ratio(rates, sbx), ratio(rates, sb3)))
                print(f"| {name} | {env_id} | {spread(rates)} | {spread(sbx) if sbx else '-'} | {faster_sbx} | "
                      f"{spread(sb3) if sb3 else '-'} | {faster_sb3} | {update:.0f} |", flush=True)
                first = (precision, compile, graph) == modes[0]
                results["runs"][f"{name} {env_id}"] = {"ours": rates, "sbx": sbx, "sb3": sb3, "update_us": update,
                                                       "ours_offline": offline if first else []}
    print("\nOur side chose:\n" + "\n".join(sorted(SPEED_LINES)))
    results["speed_lines"] = sorted(SPEED_LINES)
    if args.logging:
        print("\n| run | wandb disabled | wandb offline | offline / disabled |\n|---|---|---|---|")
        for name, r in results["runs"].items():
            if not r["ours_offline"]:  # the other precisions' rows
                continue
            print(f"| {name} | {spread(r['ours'])} | {spread(r['ours_offline'])} | "
                  f"{statistics.median(r['ours_offline']) / statistics.median(r['ours']):.3f} |")
    out = ROOT / "benchmarks" / "results" / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nraw numbers: {out}")


if __name__ == "__main__":
    main()
