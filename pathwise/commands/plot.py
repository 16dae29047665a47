"""Learning curves from runs' local records: evaluation return (or any logged metric) against env steps, no
wandb needed.

    python plot.py runs/Pendulum-v1__sac__s1__* runs/Pendulum-v1__sac__s2__* -o curves.png
    python plot.py runs/Pendulum-v1__sac__s* --metric train/critic_loss -o critic_loss.png

Runs whose configs differ only by seed are drawn as one curve: by default the interquartile mean (IQM) over
seeds with a shaded 95% stratified-bootstrap confidence interval, as rliable computes them (Agarwal et al. 2021);
`--aggregate mean` draws the mean +- one standard deviation instead. Each env gets its own panel, side by side,
and in each the experiments (agents, settings) are drawn against each other.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

from pathwise.config import from_dict, to_dict
from pathwise.errors import UserError
from pathwise.logger import TENSORBOARD_DIR, experiment_identity, read_scalars

EVAL_RETURN = "eval/return_mean"
FROM_CSV = {EVAL_RETURN: "return_mean", "eval/success_rate": "success_rate"}  # the metrics evaluations.csv holds

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


def _with_defaults(config: dict) -> dict:
    """A run's config with the defaults of fields added since it ran, so that it groups with a newer run of the
    same experiment; as written where it no longer reads as a config."""
    try:
        return to_dict(from_dict(config, "config.yaml"))
    except UserError:
        return config


def read_run(run_dir: Path, metric: str = EVAL_RETURN) -> tuple[dict, np.ndarray, np.ndarray]:
    """(experiment config without the seed, steps, values of `metric`) of one run directory: the evaluation
    return and success rate from evaluations.csv, any other metric from the run's TensorBoard event files."""
    config_path, evals_path = run_dir / "config.yaml", run_dir / "evaluations.csv"
    if not config_path.is_file() or not evals_path.is_file():
        raise PlotError(f"{run_dir} is not a run directory (no config.yaml and evaluations.csv).")
    experiment = _flatten(experiment_identity(_with_defaults(yaml.safe_load(config_path.read_text()) or {})))
    if metric not in FROM_CSV:
        if not (run_dir / TENSORBOARD_DIR).is_dir():
            raise PlotError(f"{run_dir} has no TensorBoard files to read {metric} from (it ran with "
                            "--no-tensorboard, or before pathwise wrote them).")
        return experiment, *read_scalars(run_dir, metric)
    rows = [r for r in csv.DictReader(open(evals_path)) if r.get(FROM_CSV[metric])]  # success: where the env said
    steps = np.array([int(r["env_steps"]) for r in rows])
    values = np.array([float(r[FROM_CSV[metric]]) for r in rows])
    return experiment, steps, values


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


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """The interquartile mean along `axis`: the mean of what is left once a quarter of the values (rounded down)
    is cut from each end, as scipy.stats.trim_mean(values, 0.25) and rliable's aggregate_iqm compute it."""
    n = values.shape[axis]
    cut = int(0.25 * n)
    return np.take(np.sort(values, axis=axis), range(cut, n - cut), axis=axis).mean(axis=axis)


def aggregate(curves: list[tuple[np.ndarray, np.ndarray]], method: str = "iqm", reps: int = 2000,
              seed: int = 0) -> tuple[np.ndarray, ...]:
    """Steps, and over the runs at each step a center with the lower and upper edges of its band, on the first
    run's steps up to where every run has data.

    "iqm": the interquartile mean, with a 95% stratified-bootstrap confidence interval (Agarwal et al. 2021,
    percentile method, `reps` resamples): the runs are resampled with replacement within each task, and a curve
    is one env, so within its seeds. "mean": the mean, +- one standard deviation over runs.
    """
    last = min(steps[-1] for steps, _ in curves)
    grid = curves[0][0][curves[0][0] <= last]
    values = np.stack([np.interp(grid, steps, returns) for steps, returns in curves])  # (runs, points)
    if method == "mean":
        mean, std = values.mean(0), values.std(0)
        return grid, mean, mean - std, mean + std
    center = iqm(values)
    resamples = np.random.default_rng(seed).integers(0, len(curves), size=(reps, len(curves)))  # (reps, runs)
    boot = iqm(values[resamples], axis=1)  # (reps, points)
    lower, upper = np.percentile(boot, [2.5, 97.5], axis=0)
    return grid, center, lower, upper


def label(experiment: dict, others: list[dict], n_runs: int) -> str:
    agent = experiment.get("agent", "sac")
    differing = sorted(k for k in experiment if k != "env" and any(o.get(k) != experiment[k] for o in others)
                       if "." not in k or k.startswith(agent + "."))
    parts = [f"{k.removeprefix(agent + '.')}={experiment[k]}" for k in differing[:4]]
    return (", ".join(parts) or agent.upper()) + f" ({n_runs} seed{'s' if n_runs > 1 else ''})"


AGGREGATES = {"iqm": "IQM, 95% bootstrap CI over seeds", "mean": "mean +- std over seeds"}


def plot(run_dirs: list[Path], output: Path, title: str | None = None, metric: str = EVAL_RETURN,
         method: str = "iqm") -> Path:
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
            steps, mean, lower, upper = aggregate(curves, method)
            line, = ax.plot(steps, mean, marker="o" if len(steps) < 30 else None, markersize=4,
                            label=label(experiment, [e for e, _ in in_env], len(curves)))
            ax.fill_between(steps, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        what = "evaluation return" if metric == EVAL_RETURN else metric
        ax.set(title=env, xlabel="env steps", ylabel=f"{what} ({AGGREGATES[method]})")
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
                        help=f"what to draw: any logged metric, e.g. eval/success_rate or train/critic_loss "
                             f"[default: {EVAL_RETURN}]")
    parser.add_argument("--aggregate", choices=tuple(AGGREGATES), default="iqm",
                        help="over the seeds of an experiment: iqm (interquartile mean, 95%% stratified-bootstrap "
                             "CI) or mean (+- std) [default: iqm]")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        path = plot(args.runs, args.output, args.title, args.metric, args.aggregate)
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
