"""DeepMind Control at 100k env steps: a recipe's runs against the published MR.Q, SimbaV2 and TD-MPC2 numbers.

    python benchmarks/mujoco.py --agents se-catlinf-hl-wn-grise20-pa-ar2 --steps 100000 --seeds 1 2 3 \\
        --envs dm_control/cartpole-swingup-v0 dm_control/walker-walk-v0 dm_control/cheetah-run-v0
    python benchmarks/dmc.py     # the preset's table (se-catlinf-hl-wn-grise20-pa-ar2), and docs/dmc.png
    python benchmarks/dmc.py --agent se-catlinf-hl-wn-grise20-pa-ar2 se-catlinf-hl-wn-grise20-pa-ar1   # a table each

The "-ar2" runs are the sample-efficient preset as `train.py --env dm_control/... --config sample-efficient` runs it
(the dm_control/ tasks' preset holds each action for two env steps); "-ar1" the same without an action repeat.

Needs `pip install -e ".[dmc]"` (shimmy and dm-control, MuJoCo 4). Our runs count env steps: without an action
repeat 100k env steps are 100k agent steps; with `--action-repeat 2` (the "-ar2" variants) 50k, as in the published
runs, which held each action for two simulator steps, so their 100k env steps are 50k agent steps. Their numbers
(mean +- standard error over seeds at 100k env steps) were read from the authors' released result files:
facebookresearch/MRQ `results/dmc_results.txt` (10 seeds; its rows count agent steps, so `Timestep 50000`),
dojeon-ai/SimbaV2 `results/baseline/simbaV2_utd2.csv` (10 seeds) and
nicklashansen/tdmpc2 `results/tdmpc2/<task>.csv` (3 seeds). Per task: our seeds, mean +- s.e., worst seed, and the
gap to MR.Q with the two standard errors combined (sqrt(s.e.^2 + s.e.^2); MR.Q's alone for one seed of ours).
"""

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from frontier import at, finish  # noqa: E402
from mujoco import curves  # noqa: E402

from pathwise.commands.plot import aggregate  # noqa: E402

TASKS = ("cartpole-swingup", "walker-walk", "cheetah-run")
STEPS = 100_000
# method -> per task (in TASKS' order) the published (mean, standard error) at 100k env steps
PUBLISHED = {
    "MR.Q": ((853, 2), (891, 26), (648, 19)),
    "SimbaV2 (2 updates per step)": ((861, 4), (962, 2), (642, 39)),
    "TD-MPC2 (3 seeds)": ((839, 25), (962, 7), (519, 48)),
}


def env_id(task: str) -> str:
    return f"dm_control/{task}-v0"


def finals(agent: str, task: str, seeds: list[int]) -> list[float]:
    """Each finished run's evaluation at 100k env steps."""
    runs = curves(env_id(task), agent, seeds, STEPS)
    return [v for steps, returns in runs if (v := at(steps, returns, STEPS)) is not None]


def table(agent: str, seeds: list[int]) -> str:
    names = list(PUBLISHED)
    lines = [f"| at 100k env steps | seeds | ours, mean +- s.e. | worst seed | {' | '.join(names)} | ours - MR.Q | "
             "within one s.e. of MR.Q |", "|---|---|---|---|" + "---|" * len(names) + "---|---|"]
    for t, task in enumerate(TASKS):
        values = finals(agent, task, seeds)
        cells = " | ".join(f"{PUBLISHED[n][t][0]} +- {PUBLISHED[n][t][1]}" for n in names)
        if not values:
            lines.append(f"| {task} | 0 | - | - | {cells} | - | - |")
            continue
        mean = statistics.mean(values)
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        mrq, mrq_se = PUBLISHED["MR.Q"][t]
        gap = mean - mrq
        within = gap >= -math.hypot(se or 0.0, mrq_se)
        ours = f"{mean:.0f} +- {se:.0f}" if se is not None else f"{mean:.0f} (one seed)"
        lines.append(f"| {task} | {len(values)} | {ours} | {min(values):.0f} | {cells} | {gap:+.0f} | "
                     f"{'yes' if within else 'no'} |")
    return "\n".join(lines)


def figure(agents: list[str], seeds: list[int], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(5 * len(TASKS), 4.8), squeeze=False)
    for ax, (t, task) in zip(axes[0], enumerate(TASKS)):
        counts = []  # each variant's seeds on this task, in the panel's title
        for a, agent in enumerate(agents):
            runs = curves(env_id(task), agent, seeds, STEPS)
            counts.append(str(len(runs)))
            if runs:
                color = f"C{0 if a == 0 else len(PUBLISHED) + a}"
                grid, mean, lower, upper = aggregate(runs)
                ax.plot(grid, mean, color=color, label="ours" if len(agents) == 1 else agent)
                ax.fill_between(grid, lower, upper, color=color, alpha=0.2, linewidth=0)
        for i, (method, cells) in enumerate(PUBLISHED.items()):
            value, se = cells[t]
            ax.errorbar([STEPS], [value], yerr=[se], fmt="osD"[i], color=f"C{i + 1}", capsize=3, label=method)
        ax.set(title=f"{task} ({' / '.join(counts)} seeds)", xlabel="env steps", ylim=(0, 1000))
        ax.grid(alpha=0.3)
    finish(fig, axes, output, columns=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", nargs="+", default=["se-catlinf-hl-wn-grise20-pa-ar2"],
                        help="variants of benchmarks/mujoco.py, run for 100k steps (a table each, one figure); by "
                             "default the sample-efficient preset's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "dmc.png")
    args = parser.parse_args()
    for agent in args.agent:
        print(f"{agent}:\n{table(agent, args.seeds)}\n")
    figure(args.agent, args.seeds, args.output)
    print(f"\nfinished runs of {STEPS:,} env steps, seeds {args.seeds}; curves in {args.output}")


if __name__ == "__main__":
    main()
