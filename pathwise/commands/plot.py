"""Learning curves from runs' local records: evaluation return (or any logged metric) against env steps, no
wandb needed.

    python plot.py runs/Pendulum-v1__sac__s1__* runs/Pendulum-v1__sac__s2__* -o curves.png
    python plot.py runs/Pendulum-v1__sac__s* --metric train/critic_loss -o critic_loss.png

Runs whose configs differ only by seed are drawn as one curve: the mean over seeds, with a shaded 95%
confidence band (Student t over seeds, drawn no wider than the runs' own range). Curves of different envs go to
different panels.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

from pathwise.logger import TENSORBOARD_DIR, experiment_identity, read_scalars

EVAL_RETURN = "eval/return_mean"

# Two-sided 95% Student t quantiles for n - 1 degrees of freedom; 1.96 beyond.
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 15: 2.13,
        20: 2.09, 30: 2.04}


class PlotError(Exception):
    pass


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out


def read_run(run_dir: Path, metric: str = EVAL_RETURN) -> tuple[dict, np.ndarray, np.ndarray]:
    """(experiment config without the seed, steps, values of `metric`) of one run directory: the evaluation
    return from evaluations.csv, any other metric from the run's TensorBoard event files."""
    config_path, evals_path = run_dir / "config.yaml", run_dir / "evaluations.csv"
    if not config_path.is_file() or not evals_path.is_file():
        raise PlotError(f"{run_dir} is not a run directory (no config.yaml and evaluations.csv).")
    experiment = _flatten(experiment_identity(yaml.safe_load(config_path.read_text()) or {}))
    if metric != EVAL_RETURN:
        if not (run_dir / TENSORBOARD_DIR).is_dir():
            raise PlotError(f"{run_dir} has no TensorBoard files to read {metric} from (it ran with "
                            "--no-tensorboard, or before pathwise wrote them).")
        return experiment, *read_scalars(run_dir, metric)
    rows = list(csv.DictReader(open(evals_path)))
    steps = np.array([int(r["env_steps"]) for r in rows])
    returns = np.array([float(r["return_mean"]) for r in rows])
    return experiment, steps, returns


def group_runs(run_dirs: list[Path], metric: str = EVAL_RETURN) -> list[tuple[dict, list]]:
    """Runs that share an experiment config, in first-seen order: [(experiment, [(steps, values), ...])]."""
    groups: list[tuple[dict, list]] = []
    for run_dir in run_dirs:
        experiment, steps, returns = read_run(run_dir, metric)
        if len(steps) == 0:
            print(f"plot.py: skipping {run_dir}: no {metric} recorded yet", file=sys.stderr)
            continue
        for known, curves in groups:
            if known == experiment:
                curves.append((steps, returns))
                break
        else:
            groups.append((experiment, [(steps, returns)]))
    return groups


def mean_and_band(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Steps, mean, and the 95% band's lower and upper edges over runs, on the first run's steps up to where
    every run has data. The band is drawn no wider than the runs themselves went (few seeds make t large)."""
    last = min(steps[-1] for steps, _ in curves)
    grid = curves[0][0][curves[0][0] <= last]
    values = np.stack([np.interp(grid, steps, returns) for steps, returns in curves])  # (runs, points)
    n, mean = len(curves), values.mean(0)
    if n == 1:
        return grid, mean, mean, mean
    # The quantile of the largest tabulated dof not above n - 1: never narrower than the exact band.
    t = next(q for dof, q in sorted(_T95.items(), reverse=True) if dof <= n - 1)
    half = t * values.std(0, ddof=1) / np.sqrt(n)
    return grid, mean, np.maximum(mean - half, values.min(0)), np.minimum(mean + half, values.max(0))


def label(experiment: dict, others: list[dict], n_runs: int) -> str:
    agent = experiment.get("agent", "sac")
    differing = sorted(k for k in experiment if k != "env" and any(o.get(k) != experiment[k] for o in others)
                       if "." not in k or k.startswith(agent + "."))
    parts = [f"{k.removeprefix(agent + '.')}={experiment[k]}" for k in differing[:4]]
    return (", ".join(parts) or agent.upper()) + f" ({n_runs} seed{'s' if n_runs > 1 else ''})"


def plot(run_dirs: list[Path], output: Path, title: str | None = None, metric: str = EVAL_RETURN) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs(run_dirs, metric)
    if not groups:
        raise PlotError(f"none of the runs has recorded {metric} yet (the names are those in wandb and "
                        "TensorBoard, e.g. train/critic_loss).")
    envs = list(dict.fromkeys(experiment["env"] for experiment, _ in groups))
    fig, axes = plt.subplots(1, len(envs), figsize=(6.5 * len(envs), 4.5), squeeze=False)
    for ax, env in zip(axes[0], envs):
        in_env = [g for g in groups if g[0]["env"] == env]
        for experiment, curves in in_env:
            steps, mean, lower, upper = mean_and_band(curves)
            line, = ax.plot(steps, mean, marker="o" if len(steps) < 30 else None, markersize=4,
                            label=label(experiment, [e for e, _ in in_env], len(curves)))
            ax.fill_between(steps, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(title=env, xlabel="env steps", ylabel="evaluation return" if metric == EVAL_RETURN else metric)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plot.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("-o", "--output", type=Path, default=Path("curves.png"), help="image to write")
    parser.add_argument("--title", help="a title above the panels")
    parser.add_argument("--metric", default=EVAL_RETURN,
                        help=f"what to draw: any logged metric, e.g. train/critic_loss [default: {EVAL_RETURN}]")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        path = plot(args.runs, args.output, args.title, args.metric)
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
