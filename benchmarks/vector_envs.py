"""Many envs per run: EnvPool against Gymnasium's sync and async vector envs, the env alone and through train.py.

    python benchmarks/vector_envs.py                                   # HalfCheetah-v5; 1, 8 and 64 envs
    python benchmarks/vector_envs.py --envs Hopper-v5 --num-envs 8 --rounds 5
    python benchmarks/vector_envs.py --skip-alone --train-steps 10000  # also a training run (updates included)

The env alone: random actions stepped through each engine with its own autoreset (Gymnasium's vector envs as
`gymnasium.make_vec` makes them, EnvPool's synchronous pool, the batched engines `mjx`, `mjlab` and `torch` through
the protocol: `--envs playground/CheetahRun --modes mjx`, `--envs mjlab/Cartpole-Swingup --modes mjlab`), env steps
per second over `--alone-steps` env steps.
Through the project: `train.py --vector-mode MODE --num-envs 8` making only random steps (learning starts after the
last step, no evaluation, no checkpoint), timed as a whole process, imports included; with `--train-steps`, also a
run that updates (1,000 random steps, then an update per vector step). Sides alternate in every round; medians.
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Off the import path, this script's own folder: its mujoco.py would stand in for MuJoCo.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
_spec = importlib.util.spec_from_file_location("throughput", ROOT / "benchmarks" / "throughput.py")
throughput = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(throughput)


def alone(mode: str, env_id: str, num_envs: int, steps: int) -> float:
    """Env steps/s of `num_envs` envs of `env_id` in `mode`, over about `steps` env steps (after one warm-up)."""
    calls = max(steps // num_envs, 10)
    if mode in ("mjx", "mjlab", "torch"):  # the batched engines, through the protocol (actions in [-1, 1] as tensors)
        import torch

        from pathwise.envs import make_batched_env
        envs = make_batched_env(env_id, num_envs, mode, seed=0)
        actions = torch.rand((calls, num_envs, envs.act_dim), generator=torch.Generator().manual_seed(0)) * 2 - 1
        envs.reset()
        envs.step(actions[0])  # MJX compiles its step here
        start = time.perf_counter()
        for action in actions:
            envs.step(action)
        return calls * num_envs / (time.perf_counter() - start)
    if mode == "envpool":
        import envpool
        envs = envpool.make_gymnasium(env_id, num_envs=num_envs, batch_size=num_envs, seed=0,
                                      num_threads=min(num_envs, len(os.sched_getaffinity(0))))
    else:
        import gymnasium as gym
        if env_id.startswith("dm_control/"):
            import shimmy  # noqa: F401 (registers the DeepMind Control tasks)
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode)
    act_dim = envs.action_space.shape[-1]
    actions = np.random.default_rng(0).uniform(-1, 1, (calls, num_envs, act_dim))
    envs.reset(seed=0)
    envs.step(actions[0])
    start = time.perf_counter()
    for action in actions:
        envs.step(action)
    took = time.perf_counter() - start
    envs.close()
    return calls * num_envs / took


def whole(mode: str, env_id: str, num_envs: int, steps: int, learning_starts: int) -> float:
    """Seconds of a whole train.py process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "train.py"), "--env", env_id, "--vector-mode", mode, "--num-envs",
               str(num_envs), "--total-steps", str(steps), "--learning-starts", str(learning_starts),
               "--eval-every", "0", "--eval-episodes", "0", "--checkpoint-every", "0", "--no-save-buffer",
               "--wandb", "disabled", "--no-tensorboard", "--run-dir", f"{tmp}/run", "--log-every",
               str(steps)]
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        took = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"{mode}: train.py failed:\n{result.stderr[-2000:]}")
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5"])
    parser.add_argument("--modes", nargs="+", default=["sync", "async", "envpool"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 8, 64], help="for the env alone")
    parser.add_argument("--alone-steps", type=int, default=20_000)
    parser.add_argument("--run-envs", type=int, default=8, help="envs of the train.py runs")
    parser.add_argument("--run-steps", type=int, default=40_000, help="env steps of the random-steps run")
    parser.add_argument("--train-steps", type=int, default=0, help="env steps of a run that updates (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-alone", action="store_true")
    parser.add_argument("--skip-runs", action="store_true", help="the env alone only")
    args = parser.parse_args()
    print(f"CPU: {throughput.describe_cpu()}; {len(os.sched_getaffinity(0))} CPUs usable", flush=True)
    for env_id in args.envs:
        if not args.skip_alone:
            for n in args.num_envs:
                rates = {mode: [] for mode in args.modes}
                for _ in range(args.rounds):
                    for mode in args.modes:
                        rates[mode].append(alone(mode, env_id, n, args.alone_steps))
                line = ", ".join(f"{mode} {statistics.median(r):,.0f}" for mode, r in rates.items())
                print(f"{env_id}, {n} envs, the env alone (env steps/s, median of {args.rounds}): {line}", flush=True)
        if args.skip_runs:
            continue
        runs = [("random steps", args.run_steps, args.run_steps)]
        if args.train_steps:
            runs.append(("training", args.train_steps, 1_000))
        for what, steps, learning_starts in runs:
            times = {mode: [] for mode in args.modes}
            for _ in range(args.rounds):
                for mode in args.modes:
                    times[mode].append(whole(mode, env_id, args.run_envs, steps, learning_starts))
            medians = {mode: statistics.median(t) for mode, t in times.items()}
            base = medians.get("sync")
            line = ", ".join(f"{mode} {m:.1f} s" + (f" ({base / m:.2f}x sync)" if base and mode != "sync" else "")
                             for mode, m in medians.items())
            print(f"{env_id}, train.py, {args.run_envs} envs, {steps:,} env steps, {what} (whole process, median of "
                  f"{args.rounds}): {line}", flush=True)


if __name__ == "__main__":
    main()
