"""Goal-conditioned benchmark: our agents with hindsight relabelling against Stable-Baselines3's HER, equal env steps.

    python benchmarks/goals.py                            # FetchReach-v4 x (sac, tqc, sb3-sac, sb3-tqc) x 3 seeds
    python benchmarks/goals.py --envs FetchPush-v4 --steps 100000 --agents tqc sb3-tqc
    python benchmarks/goals.py --agents sac-1env sac-4envs sac-4envs-u4   # hindsight with four envs stepped together
    python benchmarks/goals.py --report                   # the table from the finished runs only

Needs `pip install -e ".[robotics,bench]"` (Gymnasium-Robotics with MuJoCo 3.3.7, and SB3 with sb3-contrib). Ours:
`train.py --env ENV --agent A`, the env's preset (configs/FetchReach-v4.yaml: --her, normalized observations, 1k
random steps, gamma 0.95, learning rates 1e-3), evaluated every `--eval-every` steps on 20 deterministic episodes.
SB3: rl-baselines3-zoo's HER settings (hyperparams/tqc.yml, FetchReach: HerReplayBuffer with the future strategy
and 4 relabels, 64x64 networks with one critic, batch 256, gamma 0.95, lr 1e-3, 1k random steps, VecNormalize;
FetchPush: 512x512x512 with two critics, batch 2048, tau 0.05, no normalization), the same evaluation (episode i
seeded 10,000 + seed + i). A run's wall time is its whole process: imports, env and network construction, training
and evaluations. Runs go to benchmarks/results/goals/<env>/<agent>/s<seed>/ (evaluations.csv with success_rate,
wall_seconds.txt); a finished run is not run again. Prints a Markdown table for docs/benchmarks.md.
"""

import argparse
import csv
import shutil
import signal
import statistics
import sys
from pathlib import Path

from mujoco import exit_if_stopped, finished, stop_runs, timed_run  # benchmarks/mujoco.py

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "goals"
PEERS = ("sb3-sac", "sb3-tqc")
# Named variants of our agents: train.py flags. With --num-envs N each call of env.step gives N transitions and
# --updates-per-step updates, so "-4envs" makes a quarter of the updates per transition and "-4envs-u4" as many.
VARIANTS = {"sac-1env": ["--agent", "sac", "--num-envs", "1"],  # sac again, beside the same load as these
            "sac-4envs": ["--agent", "sac", "--num-envs", "4"],
            "sac-4envs-u4": ["--agent", "sac", "--num-envs", "4", "--updates-per-step", "4"],
            # The preset with observations normalized (FetchReach's preset normalizes them, FetchPush's does not)
            "tqc-norm": ["--agent", "tqc", "--normalize-obs"]}

PEER_WORKER = r"""
import csv, sys
import gymnasium as gym
import gymnasium_robotics  # noqa: F401 (registers the Fetch envs)
import numpy as np
import torch
from stable_baselines3 import HerReplayBuffer, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from sb3_contrib import TQC

peer, env_id, seed, steps, eval_every, episodes, threads, out = sys.argv[1:]
seed, steps, eval_every, episodes = int(seed), int(steps), int(eval_every), int(episodes)
torch.set_num_threads(int(threads))
push = not env_id.startswith("FetchReach")
env = DummyVecEnv([lambda: gym.make(env_id)])
if not push:  # the zoo normalizes FetchReach's observations (and rewards), not FetchPush's
    env = VecNormalize(env, gamma=0.95)
if push:
    settings = dict(batch_size=2048, tau=0.05, policy_kwargs=dict(net_arch=[512, 512, 512], n_critics=2))
else:
    settings = dict(batch_size=256, learning_starts=1_000, ent_coef="auto",
                    policy_kwargs=dict(net_arch=[64, 64], n_critics=1))
model = (SAC if peer == "sb3-sac" else TQC)(
    "MultiInputPolicy", env, buffer_size=1_000_000, gamma=0.95, learning_rate=1e-3, seed=seed, device="cpu",
    replay_buffer_class=HerReplayBuffer, replay_buffer_kwargs=dict(goal_selection_strategy="future", n_sampled_goal=4),
    **settings)
eval_env, rows = gym.make(env_id), []

def evaluate(step):
    returns, successes = [], []
    for i in range(episodes):
        obs, _ = eval_env.reset(seed=10_000 + seed + i)
        total, done = 0.0, False
        while not done:
            seen = env.normalize_obs(obs) if isinstance(env, VecNormalize) else obs
            action, _ = model.predict(seen, deterministic=True)
            obs, reward, terminated, truncated, info = eval_env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
        successes.append(float(info["is_success"]))
    rows.append([step, np.mean(returns), np.std(returns), np.mean(successes)])
    with open(out, "w", newline="") as f:  # after each evaluation: a run stopped early keeps what it measured
        writer = csv.writer(f)
        writer.writerow(["env_steps", "return_mean", "return_std", "success_rate"])
        writer.writerows(rows)
    print(f"{step} env steps: success {rows[-1][3]:.2f}", flush=True)

class Evaluate(BaseCallback):
    def _on_step(self):
        if self.num_timesteps % eval_every == 0 and self.num_timesteps < steps:
            evaluate(self.num_timesteps)
        return True
model.learn(steps, callback=Evaluate())
evaluate(steps)
"""


def run_dir(env_id: str, agent: str, seed: int) -> Path:
    return RESULTS / env_id / agent / f"s{seed}"


def run(env_id: str, agent: str, seed: int, args) -> str:
    path = run_dir(env_id, agent, seed)
    if finished(path, args.steps):
        return f"{env_id} {agent} s{seed}: already done"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if agent in PEERS:
        cmd = [sys.executable, "-c", PEER_WORKER, agent, env_id, str(seed), str(args.steps), str(args.eval_every),
               str(args.eval_episodes), str(args.threads), str(path / "evaluations.csv")]
    else:
        cmd = [sys.executable, str(ROOT / "train.py"), "--env", env_id, *VARIANTS.get(agent, ["--agent", agent]),
               "--seed", str(seed), "--total-steps", str(args.steps), "--eval-every", str(args.eval_every),
               "--eval-episodes", str(args.eval_episodes), "--checkpoint-every", "0", "--no-save-buffer",
               "--threads", str(args.threads), "--wandb", "disabled", "--run-dir", str(path / "run"),
               "--log-every", "5000"]
    return timed_run(f"{env_id} {agent} s{seed}", cmd, path, {"MUJOCO_GL": "egl"}, ours=agent not in PEERS)


def first_at(rows: list[dict], level: float) -> str:
    """The env steps of the first evaluation with a success rate of at least `level`."""
    hits = [int(r["env_steps"]) for r in rows if float(r["success_rate"]) >= level]
    return f"{hits[0] // 1000}k" if hits else "-"


def report(args) -> None:
    print("| env | agent | seeds | final success, mean +- SE | per seed | first >= 0.9, per seed | "
          "wall time per run, mean |")
    print("|---|---|---|---|---|---|---|")
    for env_id in args.envs:
        for agent in args.agents:
            done = [s for s in args.seeds if finished(run_dir(env_id, agent, s), args.steps)]
            if not done:
                continue
            rows = [list(csv.DictReader(open(run_dir(env_id, agent, s) / "evaluations.csv"))) for s in done]
            finals = [float(r[-1]["success_rate"]) for r in rows]
            se = statistics.stdev(finals) / len(finals) ** 0.5 if len(finals) > 1 else 0.0
            walls = [float((run_dir(env_id, agent, s) / "wall_seconds.txt").read_text()) for s in done]
            print(f"| {env_id} | {agent} | {len(done)} | {statistics.mean(finals):.2f} +- {se:.2f} | "
                  f"{', '.join(f'{f:.2f}' for f in finals)} | {', '.join(first_at(r, 0.9) for r in rows)} | "
                  f"{statistics.mean(walls) / 60:.1f} min |")
    print(f"\n{args.steps:,} env steps per run; {args.eval_episodes} deterministic evaluation episodes every "
          f"{args.eval_every:,} steps.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["FetchReach-v4"])
    parser.add_argument("--agents", nargs="+", default=["sac", "sb3-sac", "tqc", "sb3-tqc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--report", action="store_true", help="only print the table of the finished runs")
    args = parser.parse_args()
    if not args.report:
        signal.signal(signal.SIGTERM, stop_runs)
        # seed by seed, the agents alternating: runs compared share the machine's load alike
        for seed in args.seeds:
            for env_id in args.envs:
                for agent in args.agents:
                    print(run(env_id, agent, seed, args), flush=True)
        exit_if_stopped()
    report(args)


if __name__ == "__main__":
    main()
