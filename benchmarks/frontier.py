"""The learning frontier: a recipe's 100k-step MuJoCo runs against the published numbers at 50k and 100k env steps.

    python benchmarks/mujoco.py --agents se-lr1 --envs HalfCheetah-v5 Hopper-v5 Walker2d-v5 Ant-v5 --steps 100000
    python benchmarks/frontier.py --agent se-lr1                  # the table, and docs/frontier.png
    python benchmarks/frontier.py --agent se-cat-hl-wn --agent-for Ant-v5=se-v4obs-cat-hl-wn   # Ant as v4 sees it

Each cell comes from the same runs: the evaluation at 50,000 env steps of a 100,000-step run and its last one (a
recipe whose schedule depends on the run's length could not be read this way). Per cell: seeds, mean +- standard
error over seeds, the worst seed, the best published number and the gap to it, and CrossQ's published number (no
cell may fall below it). The figure draws our curves (IQM over seeds, 95% stratified-bootstrap band) with the
published points.

The published numbers are Gym MuJoCo v4 (our runs are v5: Ant-v5 observes its contact forces unless
`include_cfrc_ext_in_observation=False`), the mean over seeds of the evaluation at the step nearest the budget,
from the authors' released result files: dojeon-ai/SimbaV2 `results/` (CrossQ, SimbaV2, SimBa), facebookresearch/MRQ
`results/gym_results.txt`, dmksjfl/DR.Q `results/drq.csv`, Holiday-Robot/FlashSAC `results/stateRL_cpusim/`
(100k only); 10 seeds unless noted.
"""

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from mujoco import curves  # noqa: E402

from pathwise.commands.plot import AGGREGATES, aggregate  # noqa: E402

ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
BUDGETS = (50_000, 100_000)
# method -> per env (in ENVS' order) the published return at 50k and at 100k; None where none was released
PUBLISHED = {
    "CrossQ": ((6345, 8112), (1421, 2764), (1096, 3914), (836, 2299)),
    "SimbaV2, UTD 2": ((5887, 7328), (1050, 2821), (601, 3023), (1495, 3881)),
    "SimbaV2, UTD 8 (5 seeds)": ((6622, 7505), (3231, 2927), (2584, 4488), (1797, 3942)),
    "SimBa, UTD 8 (5 seeds)": ((None, None), (None, None), (1401, 2749), (3601, 5219)),
    "MR.Q": ((5422, 7872), (961, 2249), (686, 3127), (1474, 2801)),
    "XQC": ((6754, 8597), (2735, 2828), (2374, 3612), (1249, 3018)),
    "DR.Q": ((8114, 9439), (1987, 2258), (1658, 4151), (2433, 3817)),
    "FlashSAC (5 seeds)": ((None, 9815), (None, 2121), (None, 3299), (None, 3196)),
}


def published(env: str, budget: int) -> dict[str, int]:
    """The methods with a number in this cell, and the number."""
    e, b = ENVS.index(env), BUDGETS.index(budget)
    return {method: cells[e][b] for method, cells in PUBLISHED.items() if cells[e][b] is not None}


def at(steps, returns, budget: int) -> float | None:
    """The evaluation at `budget` env steps, or None if the run has none there."""
    hits = returns[steps == budget]
    return float(hits[0]) if len(hits) else None


def cells(agents: dict[str, str], seeds: list[int], steps: int, envs=ENVS) -> list[dict]:
    """`agents`: the variant run on each env."""
    rows = []
    for env in envs:
        runs = curves(env, agents[env], seeds, steps)
        for budget in BUDGETS:
            values = [v for s, r in runs if (v := at(s, r, budget)) is not None]
            others = published(env, budget)
            best = max(others, key=others.get)
            row = {"env": env, "agent": agents[env], "budget": budget, "seeds": len(values), "best": best,
                   "best_value": others[best], "crossq": others["CrossQ"]}
            if values:
                row["mean"] = statistics.mean(values)
                row["se"] = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
                row["worst"] = min(values)
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| env | variant | env steps | seeds | ours, mean +- s.e. | worst seed | best published | ours - best | "
             "CrossQ published | above CrossQ |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['env']} | `{r['agent']}` | {r['budget'] // 1000}k | {r['seeds']} |"
        tail = f"{r['best']} {r['best_value']} |"
        if "mean" not in r:
            lines.append(f"{head} - | - | {tail} - | {r['crossq']} | - |")
            continue
        spread = f" +- {r['se']:.0f}" if math.isfinite(r["se"]) else " (one seed)"
        lines.append(f"{head} {r['mean']:.0f}{spread} | {r['worst']:.0f} | {tail} "
                     f"{r['mean'] - r['best_value']:+.0f} | {r['crossq']} | "
                     f"{'yes' if r['mean'] > r['crossq'] else 'no'} |")
    return "\n".join(lines)


def figure(agents: dict[str, str], seeds: list[int], steps: int, output: Path, envs=ENVS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 4.2), squeeze=False)
    markers = "osD^v<>P"
    for ax, env in zip(axes[0], envs):
        runs = curves(env, agents[env], seeds, steps)
        if runs:
            grid, mean, lower, upper = aggregate(runs)
            ax.plot(grid, mean, color="C0", label="ours (the table gives the variant and seeds)")
            ax.fill_between(grid, lower, upper, color="C0", alpha=0.2, linewidth=0)
        for i, method in enumerate(PUBLISHED):
            points = [(b, v) for b in BUDGETS if (v := published(env, b).get(method)) is not None]
            if points:
                ax.scatter(*zip(*points), marker=markers[i], color=f"C{i + 1}", s=28, label=method, zorder=3)
        ax.set(title=f"{env}: {agents[env]}", xlabel="env steps")
        ax.grid(alpha=0.3)
    finish(fig, axes, output, columns=5)


def finish(fig, axes, output: Path, columns: int) -> None:
    """A row of panels: the return's label on the first, one legend for all of them below, saved to `output`."""
    axes[0][0].set_ylabel(f"evaluation return ({AGGREGATES['iqm']})")
    handles = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=columns, fontsize="small")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True, help="a variant of benchmarks/mujoco.py, run for --steps")
    parser.add_argument("--agent-for", nargs="+", default=[], metavar="ENV=VARIANT",
                        help="another variant on one env, e.g. Ant-v5=se-v4obs-cat-hl-wn (the same recipe without "
                             "Ant's contact forces, as the published v4 runs observe it)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "frontier.png")
    args = parser.parse_args()
    agents = dict.fromkeys(ENVS, args.agent)
    for pair in args.agent_for:
        env, _, variant = pair.partition("=")
        if env not in ENVS or not variant:
            parser.error(f"--agent-for takes ENV=VARIANT with ENV one of {', '.join(ENVS)}; got {pair!r}")
        agents[env] = variant
    print(table(cells(agents, args.seeds, args.steps, args.envs)))
    figure(agents, args.seeds, args.steps, args.output, args.envs)
    print(f"\nfinished runs of {args.steps:,} env steps, seeds {args.seeds}; curves in {args.output}")


if __name__ == "__main__":
    main()
