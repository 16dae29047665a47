"""MuJoCo benchmark: our agents and Stable-Baselines3 SAC on HalfCheetah-v5 and Hopper-v5, equal env steps.

    python benchmarks/mujoco.py                                   # 2 envs x (sac, td3, crossq, sb3-sac) x 3 seeds
    python benchmarks/mujoco.py --agents sac sb3-sac --seeds 1 2 3 --steps 50000
    python benchmarks/mujoco.py --agents crossq-256 --envs HalfCheetah-v5     # CrossQ with CPU-sized critics
    python benchmarks/mujoco.py --agents crossq-256 sbx-crossq-256 --sbx-python ~/sbx-venv/bin/python  # vs SBX
    python benchmarks/mujoco.py --report                          # table and plot from the finished runs only
    python benchmarks/mujoco.py --agents crossq-256-utd2-bf16 --steps 100000   # longer runs, kept apart

Every run: the env's preset (configs/), `--total-steps` env steps, a deterministic evaluation of 10 episodes every
`--eval-every` steps and at the end. Stable-Baselines3 SAC gets rl-baselines3-zoo's settings for these envs (the
same as our SAC preset: 10k random steps, lr 3e-4, batch 256, 256x256) and the same evaluation (episode i seeded
10,000 + seed + i, as ours). Runs go to benchmarks/results/mujoco/<env>/<agent>/s<seed>/ (runs of another
--steps than 50,000 under benchmarks/results/mujoco/<steps/1000>k/); a finished run is not run again, so an
interrupted benchmark continues where it stopped; each run's evaluations.csv is kept in the repository. Prints a
Markdown table for docs/benchmarks.md and writes docs/mujoco.png (docs/mujoco-<steps/1000>k.png for another
--steps; IQM over seeds with 95% stratified-bootstrap intervals). Needs `pip install -e ".[bench]"` for sb3-sac
and sb3-tqc-5k, and SBX in its own virtual environment for sbx-crossq-256 (benchmarks/throughput.py shows how).
"""

import argparse
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pathwise.agents.registry import AGENTS  # noqa: E402
from pathwise.commands.plot import AGGREGATES, aggregate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "mujoco"
DEFAULT_STEPS = 50_000
# Named variants of our agents: train.py flags. crossq-256: CrossQ with 256-wide critics instead of 2048, the size
# a 2-core CPU can run 50k steps of in reasonable time (the 2048-wide update is about 27 times SAC's there).
CROSSQ_256 = ["--agent", "crossq", "--critic-hidden-sizes", "256", "256"]
# the first named preset sample-efficient in bf16: the base of the variants that change one thing in it
PRESET_BF16 = [*CROSSQ_256, "--updates-per-step", "2", "--precision", "bf16"]
# SimBa's temperature written out per env, as the runs were made (-|A|/2: Hopper |A| = 3, HalfCheetah |A| = 6; the
# preset says --target-entropy-per-dim -0.5), and learning rates falling to a tenth by the end of the run
SIMBA_TEMP = {"hopper": ["--init-alpha", "0.01", "--target-entropy", "-1.5"],
              "halfcheetah": ["--init-alpha", "0.01", "--target-entropy", "-3"]}
LR01 = ["--lr-final-fraction", "0.1"]
PD1 = ["--policy-delay", "1"]  # an actor (and temperature) step at every critic step; CrossQ's default is 3
# the named preset sample-efficient as it was while the recipe at 50k and 100k was screened (configs/named/ now
# holds that recipe, "se-catlinf-hl-wn-grise20-pa" below), written out so that the se-* runs stay what they were
SE = ["--agent", "crossq", "--updates-per-step", "2", "--lr-final-fraction", "0.1", "--lr-decay-steps", "50000",
      "--critic-hidden-sizes", "512", "512", "--policy-delay", "1", "--init-alpha", "0.01",
      "--target-entropy-per-dim", "-0.5"]
SE_LR1 = [*SE, "--lr-final-fraction", "1"]
V4OBS = ["--env-kwargs", "include_cfrc_ext_in_observation=False"]
CAT = ["--value-bins", "101"]
# the categorical candidate: 101 bins, HL-Gauss targets (0.75 bins wide), weight-normalized critics, bins linear in
# the value over a range that follows the rewards ("se-catlinf-hl-wn" below)
CATLINF = [*SE, *CAT, "--value-smoothing", "0.75", "--weight-norm", "--value-linear", "--value-limit", "0"]
# the sample-efficient preset: the above, its horizon rising from 0.99 to 0.995 over 20k env steps, the actor averaged
# ("se-catlinf-hl-wn-grise20-pa" below)
RECIPE = [*CATLINF, "--gamma", "0.995", "--gamma-start", "0.99", "--gamma-rise-steps", "20000", "--policy-average",
          "0.002"]
SAC_TEMP = ["--init-alpha", "1", "--target-entropy-per-dim", "-1"]
VARIANTS = {"crossq-256": CROSSQ_256,
            # SBX's log-std (a clip of the head's output to [-20, 2]) and temperature loss (in log alpha)
            "crossq-256-sbx": [*CROSSQ_256, "--log-std-bound", "clip", "--log-std-min", "-20", "--temperature-loss",
                               "log_alpha"],
            "crossq-256-n3": [*CROSSQ_256, "--n-step", "3"],
            # the named preset sample-efficient (configs/named/) as it first was
            "crossq-256-utd2": [*CROSSQ_256, "--updates-per-step", "2"],
            # the same update in bfloat16 autocast (pays on CPUs with native bf16 GEMMs: AVX512-BF16 or AMX)
            "crossq-256-utd2-bf16": PRESET_BF16,
            # the same, compiled (torch.compile of the losses): other float rounding, a faster update
            "crossq-256-utd2-bf16-compile": [*PRESET_BF16, "--compile"],
            "crossq-256-utd4-bf16": [*CROSSQ_256, "--updates-per-step", "4", "--precision", "bf16"],
            # with weight normalization (unit-norm hidden units, CrossQ + WN) for stable higher update ratios
            "crossq-256-utd2-bf16-wn": [*PRESET_BF16, "--weight-norm"],
            "crossq-256-utd4-bf16-wn": [*CROSSQ_256, "--updates-per-step", "4", "--precision", "bf16",
                                        "--weight-norm"],
            # learning rates falling linearly to a tenth of their value by the end of the run
            "crossq-256-utd2-bf16-lr01": [*PRESET_BF16, *LR01],
            "crossq-256-utd2-bf16-n3": [*PRESET_BF16, "--n-step", "3"],
            # SimBa's temperature settings (Lee et al. 2025): initial alpha 0.01, target entropy -|A|/2
            "crossq-256-utd2-bf16-simbatemp-hopper": [*PRESET_BF16, *SIMBA_TEMP["hopper"]],
            "crossq-256-utd2-bf16-simbatemp-halfcheetah": [*PRESET_BF16, *SIMBA_TEMP["halfcheetah"]],
            # both: SimBa's temperature (every seed leaves the standing start) with falling learning rates (a found
            # gait is kept), as SimbaV2 combines them: the named preset sample-efficient until the actor stepped at
            # every critic step (below)
            "crossq-256-utd2-bf16-simbatemp-lr01-hopper": [*PRESET_BF16, *SIMBA_TEMP["hopper"], *LR01],
            "crossq-256-utd2-bf16-simbatemp-lr01-halfcheetah": [*PRESET_BF16, *SIMBA_TEMP["halfcheetah"], *LR01],
            # the same on Hopper with 512-wide critics (the later flag wins), compiled: about the cost of the
            # 256-wide eager update
            "crossq-512-utd2-bf16-compile-simbatemp-lr01-hopper": [*PRESET_BF16, "--critic-hidden-sizes", "512", "512",
                                                                   "--compile", *SIMBA_TEMP["hopper"], *LR01],
            # the simbatemp-lr01 recipe with more learning per sample: three updates per env step (an actor step
            # per env step at policy delay 3), or an actor step at every critic step of two
            "crossq-256-utd3-bf16-simbatemp-lr01-hopper": [*PRESET_BF16, "--updates-per-step", "3",
                                                           *SIMBA_TEMP["hopper"], *LR01],
            # the latter was the named preset sample-efficient in bf16 until its critics became 512 wide (below)
            "crossq-256-utd2-bf16-pd1-simbatemp-lr01-hopper": [*PRESET_BF16, *PD1, *SIMBA_TEMP["hopper"], *LR01],
            "crossq-256-utd2-bf16-pd1-simbatemp-lr01-halfcheetah": [*PRESET_BF16, *PD1, *SIMBA_TEMP["halfcheetah"],
                                                                    *LR01],
            # the preset with 512-wide critics, compiled (512-wide critics at policy delay 3, above, reached the
            # best final of any seed, 3378, and lost one seed of three): the named preset sample-efficient in bf16
            # until the 100k recipe (tests/test_config.py checks that SE, below, resolves as they do)
            "crossq-512-utd2-bf16-compile-pd1-simbatemp-lr01-hopper": [*PRESET_BF16, *PD1, "--critic-hidden-sizes",
                                                                       "512", "512", "--compile",
                                                                       *SIMBA_TEMP["hopper"], *LR01],
            "crossq-512-utd2-bf16-compile-pd1-simbatemp-lr01-halfcheetah": [*PRESET_BF16, *PD1,
                                                                            "--critic-hidden-sizes", "512", "512",
                                                                            "--compile", *SIMBA_TEMP["halfcheetah"],
                                                                            *LR01],
            # the preset with learning rates falling further, to 3% (found gaits still swing at 45k)
            "crossq-256-utd2-bf16-pd1-simbatemp-lr003-hopper": [*PRESET_BF16, *PD1, *SIMBA_TEMP["hopper"],
                                                                "--lr-final-fraction", "0.03"],
            # the simbatemp-lr01 recipe with SimbaV2's discount on MuJoCo (its horizon heuristic gives 0.995 for
            # 1,000-step episodes)
            "crossq-256-utd2-bf16-simbatemp-lr01-g995-hopper": [*PRESET_BF16, *SIMBA_TEMP["hopper"], *LR01,
                                                                "--gamma", "0.995"],
            # the named preset before the 100k recipe (since 2026-12-05 its learning rates fell over the first 50k
            # steps, as se-decay50k's; before, over the run's --total-steps), and with constant learning rates
            "se": SE,
            "se-lr1": SE_LR1,
            # the same on Ant without the contact forces in its observation (27 numbers, as Ant-v4 by default and
            # the published Ant-v4 results; Ant-v5 observes 105)
            "se-lr1-v4obs": [*SE_LR1, *V4OBS],
            # with categorical critics (101 bins over [-10, 10] in symlog space, as TD-MPC2)
            "se-lr1-cat": [*SE_LR1, *CAT],
            "se-lr1-v4obs-cat": [*SE_LR1, *CAT, *V4OBS],
            # with SAC's temperature settings instead of SimBa's (initial alpha 1, target entropy -|A|)
            "se-lr1-sactemp": [*SE_LR1, *SAC_TEMP],
            "se-lr1-v4obs-sactemp": [*SE_LR1, *SAC_TEMP, *V4OBS],
            # the preset's rates falling to a tenth over the first 50k steps whatever the run's length, then held:
            # a 100k run's first half is the 50k preset run
            "se-decay50k": [*SE, "--lr-decay-steps", "50000"],
            # the preset (rates falling over the first 50k steps) with categorical critics, and Ant without contact
            # forces with and without them
            "se-cat": [*SE, *CAT],
            "se-v4obs": [*SE, *V4OBS],
            "se-v4obs-cat": [*SE, *CAT, *V4OBS],
            # the same with the TD target spread as a Gaussian of 0.75 bins (HL-Gauss) instead of two-hot
            "se-cat-hl": [*SE, *CAT, "--value-smoothing", "0.75"],
            "se-v4obs-cat-hl": [*SE, *CAT, "--value-smoothing", "0.75", *V4OBS],
            # HL-Gauss critics with each hidden unit's weights kept at unit norm (XQC's critic: batch norm, weight
            # normalization and a categorical value), and with bins twice as fine (201 over the same range)
            "se-cat-hl-wn": [*SE, *CAT, "--value-smoothing", "0.75", "--weight-norm"],
            "se-v4obs-cat-hl-wn": [*SE, *CAT, "--value-smoothing", "0.75", "--weight-norm", *V4OBS],
            "se-cat201-hl": [*SE, "--value-bins", "201", "--value-smoothing", "0.75"],
            "se-v4obs-cat201-hl": [*SE, "--value-bins", "201", "--value-smoothing", "0.75", *V4OBS],
            # both: 201 bins and weight normalization
            "se-cat201-hl-wn": [*SE, "--value-bins", "201", "--value-smoothing", "0.75", "--weight-norm"],
            "se-v4obs-cat201-hl-wn": [*SE, "--value-bins", "201", "--value-smoothing", "0.75", "--weight-norm", *V4OBS],
            # a scalar critic fit in symlog space (one scale for every task, as the bins, with a squared loss)
            "se-symlog": [*SE, "--value-symlog"],
            "se-v4obs-symlog": [*SE, "--value-symlog", *V4OBS],
            # the scalar preset with each hidden unit's weights kept at unit norm (weight normalization without the
            # categorical critic: which of XQC's two changes lets a critic learn Ant)
            "se-wn": [*SE, "--weight-norm"],
            "se-v4obs-wn": [*SE, "--weight-norm", *V4OBS],
            # the two-hot categorical critic (no HL-Gauss smoothing) with weight normalization
            "se-cat-wn": [*SE, *CAT, "--weight-norm"],
            "se-v4obs-cat-wn": [*SE, *CAT, "--weight-norm", *V4OBS],
            # se-cat-hl-wn with an actor step every third critic step (CrossQ's own default) instead of every one: a
            # slower actor, for Hopper's and Walker2d's policies that learn a gait and then a way of falling from it
            "se-cat-hl-wn-pd3": [*SE, *CAT, "--value-smoothing", "0.75", "--weight-norm", "--policy-delay", "3"],
            "se-v4obs-cat-hl-wn-pd3": [*SE, *CAT, "--value-smoothing", "0.75", "--weight-norm", "--policy-delay", "3",
                                       *V4OBS],
            # se-cat-hl-wn with its bins evenly spaced in Q over [-500, 500] instead of in symlog(Q) (a bin 10 wide,
            # 3% of Hopper's Q of about 330, where a symlog bin spans 22%): do coarse bins at large Q cost Hopper?
            "se-catlin500-hl-wn": [*SE, *CAT, "--value-smoothing", "0.75", "--weight-norm", "--value-linear",
                                   "--value-limit", "500"],
            # the same with a range that follows the rewards (--value-limit 0): it widens to r / (1 - gamma) for the
            # largest reward trained on, one rule for every task in place of a range per task
            "se-catlinf-hl-wn": CATLINF,
            "se-v4obs-catlinf-hl-wn": [*CATLINF, *V4OBS],
            # the same with the run's policy a running average of the actor, 0.002 of the way to it per env step
            # (--policy-average: of the rates 0.01, 0.002 and 0.0005 measured beside the actor by
            # benchmarks/policy_average.py, the best over four runs' evaluations at 50k and 100k)
            "se-catlinf-hl-wn-pa": [*CATLINF, "--policy-average", "0.002"],
            "se-v4obs-catlinf-hl-wn-pa": [*CATLINF, "--policy-average", "0.002", *V4OBS],
            # the candidate with a longer horizon (discount 0.995 for 0.99): at 0.99 a gait that falls 300 steps on
            # is worth only ~5% less than one that walks on, less than a faster gait gains (Hopper's late falls)
            "se-catlinf-hl-wn-g995": [*CATLINF, "--gamma", "0.995"],
            "se-v4obs-catlinf-hl-wn-g995": [*CATLINF, "--gamma", "0.995", *V4OBS],
            # the same with the run's policy the average of the actor at 0.002 (--policy-average): the grid candidate
            "se-catlinf-hl-wn-g995-pa": [*CATLINF, "--gamma", "0.995", "--policy-average", "0.002"],
            "se-v4obs-catlinf-hl-wn-g995-pa": [*CATLINF, "--gamma", "0.995", "--policy-average", "0.002", *V4OBS],
            # the grid candidate with a horizon growing from 0.99's to 0.995's over the first 50k env steps
            # (--gamma-start, --gamma-rise-steps): at 0.995 from the start Hopper's gait comes later, at 50k below 0.99
            "se-catlinf-hl-wn-grise-pa": [*CATLINF, "--gamma", "0.995", "--gamma-start", "0.99",
                                          "--gamma-rise-steps", "50000", "--policy-average", "0.002"],
            "se-v4obs-catlinf-hl-wn-grise-pa": [*CATLINF, "--gamma", "0.995", "--gamma-start", "0.99",
                                                "--gamma-rise-steps", "50000", "--policy-average", "0.002", *V4OBS],
            # the 0.995 candidate with 3-step returns (--n-step 3, as MR.Q and DR.Q): a return propagates three steps
            # an update, for the twice longer horizon that slows Hopper's first gait at 0.995
            "se-catlinf-hl-wn-g995-n3-pa": [*CATLINF, "--gamma", "0.995", "--n-step", "3", "--policy-average", "0.002"],
            "se-v4obs-catlinf-hl-wn-g995-n3-pa": [*CATLINF, "--gamma", "0.995", "--n-step", "3", "--policy-average",
                                                  "0.002", *V4OBS],
            # the growing horizon reaching 0.995 by 20k env steps instead of 50k: out of Hopper's standing start
            # early, at the long horizon for most of the first 50k; the named preset sample-efficient now (Ant's
            # runs without contact forces, to compare with the published v4 numbers; tests/test_config.py checks)
            "se-catlinf-hl-wn-grise20-pa": RECIPE,
            "se-v4obs-catlinf-hl-wn-grise20-pa": [*RECIPE, *V4OBS],
            # on the dm_control/ tasks: without an action repeat (their preset holds each action for two env steps),
            # and holding each for two (--action-repeat 2), as the DeepMind Control papers run: half the actions and
            # updates in the same env steps
            "se-catlinf-hl-wn-grise20-pa-ar1": [*RECIPE, "--action-repeat", "1"],
            "se-catlinf-hl-wn-grise20-pa-ar2": [*RECIPE, "--action-repeat", "2"],
            # screens on the dm_control/ tasks: the schedules twice as long in env steps (the learning rates falling
            # over 100k, the discount rising over 40k: with the repeat, the MuJoCo recipe's schedules in actions), and
            # the discount held at 0.99, the published DeepMind Control runs' (no rise)
            "se-catlinf-hl-wn-grise20-pa-ar2-sched2": [*RECIPE, "--action-repeat", "2", "--lr-decay-steps", "100000",
                                                       "--gamma-rise-steps", "40000"],
            "se-catlinf-hl-wn-grise20-pa-ar2-g99": [*RECIPE, "--action-repeat", "2", "--gamma", "0.99",
                                                    "--gamma-start", "0"],
            # 5k random steps instead of the preset's 10k, for SAC and for TQC (SAC with a distributional critic)
            "sac-5k": ["--agent", "sac", "--learning-starts", "5000"],
            "tqc-5k": ["--agent", "tqc", "--learning-starts", "5000"]}
# Other packages' agents, run with the same evaluation: Stable-Baselines3 SAC, sb3-contrib's TQC, and SBX's CrossQ
# (in its own virtual environment: --sbx-python).
PEERS = ("sb3-sac", "sb3-tqc-5k", "sbx-crossq-256", "sbx-se-lr1")

PEER_WORKER = """
import csv, os, sys, numpy as np, torch, gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
peer, env_id, seed, steps, eval_every, episodes, threads, out = sys.argv[1:]
seed, steps, eval_every, episodes = int(seed), int(steps), int(eval_every), int(episodes)
torch.set_num_threads(int(threads))
eval_env = gym.make(env_id)
rows = []
def evaluate(model, step):
    returns = []
    for i in range(episodes):
        obs, _ = eval_env.reset(seed=10_000 + seed + i)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = eval_env.step(model.predict(obs, deterministic=True)[0])
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    rows.append((step, float(np.mean(returns)), float(np.std(returns))))
class Evaluate(BaseCallback):
    def _on_step(self):
        if self.num_timesteps % eval_every == 0 and self.num_timesteps < steps:
            evaluate(self.model, self.num_timesteps)
        return True
if peer == "sb3-sac":  # rl-baselines3-zoo hyperparams/sac.yml for MuJoCo: 10k random steps, else SB3's defaults
    from stable_baselines3 import SAC
    model = SAC("MlpPolicy", gym.make(env_id), learning_starts=10_000, seed=seed, device="cpu")
elif peer == "sb3-tqc-5k":  # sb3-contrib's TQC at its defaults (2 x 25 quantiles, 2 dropped each) as our tqc-5k
    from sb3_contrib import TQC
    model = TQC("MlpPolicy", gym.make(env_id), learning_starts=5_000, seed=seed, device="cpu")
elif peer == "sbx-crossq-256":  # SBX's CrossQ as our crossq-256 runs (zoo's 5k random steps, 256-wide critics)
    from sbx import CrossQ
    model = CrossQ("MlpPolicy", gym.make(env_id), learning_starts=5_000, seed=seed,
                   policy_kwargs=dict(net_arch=dict(pi=[256, 256], qf=[256, 256])))
else:  # sbx-se-lr1: SBX's CrossQ at our se-lr1's settings: 512-wide critics, 2 updates per env step, an actor step
    # at each, initial alpha 0.01, target entropy -|A|/2, constant learning rates of 1e-3 (SBX's CrossQ has Adam's
    # beta1 0.5 and batch renormalization as ours; its temperature loss is in log alpha, its log-std clipped)
    from sbx import CrossQ
    env = gym.make(env_id)
    model = CrossQ("MlpPolicy", env, learning_starts=5_000, seed=seed, gradient_steps=2, policy_delay=1,
                   ent_coef="auto_0.01", target_entropy=-0.5 * env.action_space.shape[0],
                   policy_kwargs=dict(net_arch=dict(pi=[256, 256], qf=[512, 512])))
model.learn(steps, callback=Evaluate())
evaluate(model, steps)
with open(out, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["env_steps", "return_mean", "return_std"])
    writer.writerows(rows)
"""


def run_dir(env_id: str, agent: str, seed: int, steps: int = DEFAULT_STEPS) -> Path:
    """Runs of the default length under RESULTS/<env>/<agent>/s<seed>, longer or shorter ones under
    RESULTS/<steps/1000>k/<env>/<agent>/s<seed>."""
    return (RESULTS if steps == DEFAULT_STEPS else RESULTS / f"{steps // 1000}k") / env_id / agent / f"s{seed}"


def finished(path: Path, steps: int) -> bool:
    evals = path / "evaluations.csv"
    if not evals.is_file():
        return False
    rows = list(csv.DictReader(open(evals)))
    return bool(rows) and int(rows[-1]["env_steps"]) >= steps


def run(env_id: str, agent: str, seed: int, args) -> str:
    path = run_dir(env_id, agent, seed, args.steps)
    if finished(path, args.steps):
        return f"{env_id} {agent} s{seed}: already done"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if agent in PEERS:
        python = args.sbx_python if agent.startswith("sbx") else sys.executable
        cmd = [python, "-c", PEER_WORKER, agent, env_id, str(seed), str(args.steps), str(args.eval_every),
               str(args.eval_episodes), str(args.threads), str(path / "evaluations.csv")]
    else:
        entry = [str(ROOT / "benchmarks" / "policy_average.py"), "--rates", *map(str, args.average_rates), "--"] \
            if args.average_rates else [str(ROOT / "train.py")]
        cmd = [sys.executable, *entry, "--env", env_id, *VARIANTS.get(agent, ["--agent", agent]),
               "--seed", str(seed),
               "--total-steps", str(args.steps), "--eval-every", str(args.eval_every),
               "--eval-episodes", str(args.eval_episodes), "--checkpoint-every", "0", "--no-save-buffer",
               "--threads", str(args.threads), "--wandb", "disabled", "--run-dir", str(path / "run"),
               "--log-every", "5000"]
    # JAX on one thread where torch is (--threads 1), so that runs side by side do not oversubscribe
    xla = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"} \
        if agent.startswith("sbx") and args.threads == 1 else {}
    return timed_run(f"{env_id} {agent} s{seed}", cmd, path, xla, ours=agent not in PEERS)


RUNNING: set[subprocess.Popen] = set()  # the runs under way, for stop_runs
STOPPED = threading.Event()


def stop_runs(*_signal) -> None:
    """SIGTERM's handler: pass the signal on to the runs under way (each stops as train.py does) and start no more,
    so that no run is left training with nobody to collect it."""
    STOPPED.set()
    for proc in list(RUNNING):
        proc.terminate()


def exit_if_stopped() -> None:
    """After a benchmark's runs: stopped by SIGTERM, it ends in one sentence instead of reporting."""
    if STOPPED.is_set():
        sys.exit("Stopped by SIGTERM: the finished runs are kept, the others run again with the same command.")


def timed_run(label: str, cmd: list[str], path: Path, env: dict, ours: bool) -> str:
    """Run `cmd` in `path` (its output to log.txt) and write its whole wall time to wall_seconds.txt; `ours`: a
    train.py run, whose evaluations.csv is copied up from its run directory."""
    if STOPPED.is_set():
        return f"{label}: not started (stopped)"
    start = time.perf_counter()
    with open(path / "log.txt", "w") as log, subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=path, env={**os.environ, **env}) as proc:
        RUNNING.add(proc)
        if STOPPED.is_set():  # stopped while it started
            proc.terminate()
        returncode = proc.wait()
        RUNNING.discard(proc)
    wall = time.perf_counter() - start
    if returncode != 0:
        return (f"{label}: STOPPED (SIGTERM; rerun the same command to run it again)" if STOPPED.is_set() else
                f"{label}: FAILED (see {path / 'log.txt'})")
    if ours:
        shutil.copy(path / "run" / "evaluations.csv", path / "evaluations.csv")
        if (path / "run" / "averaged.csv").is_file():  # benchmarks/policy_average.py's
            shutil.copy(path / "run" / "averaged.csv", path / "averaged.csv")
    (path / "wall_seconds.txt").write_text(f"{wall:.0f}\n")
    return f"{label}: done in {wall:.0f} s"


def curves(env_id: str, agent: str, seeds: list[int], steps: int) -> list[tuple]:
    import numpy as np

    out = []
    for seed in seeds:
        path = run_dir(env_id, agent, seed, steps)
        if finished(path, steps):
            rows = list(csv.DictReader(open(path / "evaluations.csv")))
            out.append((np.array([int(r["env_steps"]) for r in rows]),
                        np.array([float(r["return_mean"]) for r in rows])))
    return out


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print("| env | agent | final return, mean +- std over seeds | per seed | late mean, per seed | wall time per run |")
    print("|---|---|---|---|---|---|")
    fig, axes = plt.subplots(1, len(args.envs), figsize=(6.5 * len(args.envs), 4.5), squeeze=False)
    for ax, env_id in zip(axes[0], args.envs):
        for agent in args.agents:
            runs = curves(env_id, agent, args.seeds, args.steps)
            if not runs:
                continue
            finals = [returns[-1] for _, returns in runs]
            spread = f"{statistics.mean(finals):.0f} +- {statistics.stdev(finals):.0f}" if len(finals) > 1 \
                else f"{finals[0]:.0f}"
            walls = [float((run_dir(env_id, agent, s, args.steps) / "wall_seconds.txt").read_text())
                     for s in args.seeds if (run_dir(env_id, agent, s, args.steps) / "wall_seconds.txt").is_file()]
            # Hopper's return at one evaluation swings by thousands from one to the next: the mean over the
            # evaluations of the last 40% of the run tells agents apart better than the last alone.
            late = [returns[steps >= 0.6 * args.steps].mean() for steps, returns in runs]
            print(f"| {env_id} | {agent} | {spread} | {', '.join(f'{r:.0f}' for r in finals)} | "
                  f"{statistics.mean(late):.0f} ({', '.join(f'{r:.0f}' for r in late)}) | "
                  f"{statistics.median(walls) / 60:.0f} min |")
            grid, mean, lower, upper = aggregate(runs)
            line, = ax.plot(grid, mean, marker="o", markersize=3, label=f"{agent} ({len(runs)} seeds)",
                            color=f"C{args.agents.index(agent)}")  # one color per agent in every panel
            ax.fill_between(grid, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(title=env_id, xlabel="env steps", ylabel=f"evaluation return ({AGGREGATES['iqm']})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    figure = "mujoco.png" if args.steps == DEFAULT_STEPS else f"mujoco-{args.steps // 1000}k.png"
    fig.savefig(ROOT / "docs" / figure, dpi=110)
    print(f"\n{args.steps:,} env steps per run; curves ({AGGREGATES['iqm']}) in docs/{figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--agents", nargs="+", default=["sac", "td3", "crossq", "sb3-sac"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--report", action="store_true", help="only print the table and draw the plot")
    parser.add_argument("--average-rates", type=float, nargs="+", default=None,
                        help="our runs through benchmarks/policy_average.py: averages of the actor at these rates "
                             "evaluated beside it (averaged.csv)")
    parser.add_argument("--sbx-python", default="python", help="the Python of a virtual environment with sbx-rl, "
                        "for sbx-crossq-256 (SBX needs JAX: keep it apart from this one)")
    args = parser.parse_args()
    unknown = [agent for agent in args.agents if agent not in VARIANTS and agent not in PEERS and agent not in AGENTS]
    if unknown:
        parser.error(f"no agent or variant named {', '.join(unknown)}: the variants are benchmarks/mujoco.py's "
                     "VARIANTS, the agents " + ", ".join(AGENTS) + ", the peers " + ", ".join(PEERS))
    failed = 0
    if not args.report:
        signal.signal(signal.SIGTERM, stop_runs)
        jobs = [(e, a, s) for s in args.seeds for e in args.envs for a in args.agents]
        with ThreadPoolExecutor(args.parallel) as pool:
            for line in pool.map(lambda job: run(*job, args), jobs):
                print(line, flush=True)
                failed += "FAILED" in line
        exit_if_stopped()
    report(args)
    if failed:
        sys.exit(f"{failed} of the runs failed: their log.txt says why")


if __name__ == "__main__":
    main()
