"""Hyperparameter sweeps and many seeds on Ray Tune; every trial is an ordinary run.

    python sweep.py configs/sweeps/pendulum_sac.yaml                   # a local Ray, started and stopped here
    python sweep.py configs/sweeps/pendulum_sac.yaml --resume          # continue an interrupted sweep
    python sweep.py configs/sweeps/pendulum_sac.yaml --address auto    # on a running Ray cluster

The sweep file names a base config, a search space over config keys, seeds, the number of samples and, if wanted,
ASHA early stopping and the optuna searcher (configs/sweeps/pendulum_sac.yaml shows every key). Results go to
SWEEP_DIR (default sweeps/<name>): one run folder per trial under tune/, trials.md, best.yaml (a train.py --config
file) and best.png (the best configurations' curves, mean and band over seeds). Needs pip install -e ".[sweep]".
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pathwise.config import resolve
from pathwise.errors import UserError
from pathwise.sweep import (
    Sweep,
    Trial,
    configurations,
    identify,
    load_sweep,
    run_trial,
    summarize,
    table,
    trial_config,
    trial_dirname,
    write_best,
)

TOP_CURVES = 3  # configurations drawn in best.png
RAY_TEMP_DIR_MAX = 40  # characters: Ray adds about 63 for a socket's path, and the limit is 107


def search_setup(sweep: Sweep):
    """(param_space, search_alg, num_samples) for Tune."""
    from ray import tune

    if sweep.searcher == "random":
        # Each configuration once per seed: two grids, so Tune draws nothing itself.
        return {"config": tune.grid_search(list(range(len(configurations(sweep))))),
                "seed": tune.grid_search(list(sweep.seeds))}, None, 1
    from ray.tune.search import Repeater
    try:
        import optuna  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise UserError("the optuna searcher needs optuna: pip install optuna.") from None
    domains = {"choice": lambda a: tune.choice(a), "uniform": lambda a: tune.uniform(float(a[0]), float(a[1])),
               "loguniform": lambda a: tune.loguniform(float(a[0]), float(a[1])),
               "randint": lambda a: tune.randint(int(a[0]), int(a[1]) + 1)}
    space = {key: domains[kind](args) for key, spec in sweep.space.items() for kind, args in spec.items()}
    # The Repeater runs each suggestion once per seed and gives optuna their mean.
    searcher = Repeater(OptunaSearch(), repeat=len(sweep.seeds), set_index=True)
    return {"params": space}, searcher, sweep.num_samples * len(sweep.seeds)


def new_tuner(trainable, sweep: Sweep, tune_dir: Path, max_concurrent: int | None):
    from ray import tune

    param_space, searcher, num_samples = search_setup(sweep)
    scheduler = None
    if sweep.asha is not None:
        from ray.tune.schedulers import ASHAScheduler
        max_t = resolve(sweep.base).total_steps
        scheduler = ASHAScheduler(time_attr="env_steps", max_t=max_t,
                                  grace_period=int(sweep.asha.get("grace_period", max_t // 4)),
                                  reduction_factor=float(sweep.asha.get("reduction_factor", 2)))
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, num_samples=num_samples,
                                    search_alg=searcher, scheduler=scheduler, max_concurrent_trials=max_concurrent,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=time.strftime("%Y%m%d-%H%M%S"), storage_path=str(tune_dir), verbose=1,
                                  failure_config=tune.FailureConfig(max_failures=0)))


def start_ray(address: str | None, sweep_dir: Path) -> None:
    import ray

    if address:
        ray.init(address=address, log_to_driver=False)
        return
    # A private Ray for this command: no dashboard, no token (it listens on this machine only), its files in
    # SWEEP_DIR/ray. Ray's sockets live in that folder and a socket path may not exceed about 107 bytes, so a
    # deep sweep folder gets a link to a short one in the system's temporary folder.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = sweep_dir / "ray"
    if len(str(temp_dir)) > RAY_TEMP_DIR_MAX:
        short = Path(tempfile.mkdtemp(prefix="pathwise-ray-"))
        if temp_dir.is_symlink():
            temp_dir.unlink()
        if not temp_dir.exists():
            temp_dir.symlink_to(short, target_is_directory=True)
        temp_dir = short
    ray.init(address="local", include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False,
             configure_logging=False)


def collect(results, sweep: Sweep, sweep_dir: Path) -> list[Trial]:
    trials = []
    for result in results:
        metrics = result.metrics or {}
        params, seed, run_dir = identify(result.config or {}, Path(result.path).name, sweep, sweep_dir)
        total = trial_config(sweep, params, seed, run_dir).total_steps
        steps, final = int(metrics.get("env_steps", 0)), metrics.get("eval/return_mean")
        if result.error is not None:
            lines = [line for line in str(result.error).splitlines() if line.strip()]
            status = "failed: " + (lines[-1].split(": ", 1)[-1] if lines else type(result.error).__name__)
        elif steps >= total:
            status = "done"
        elif metrics and sweep.asha:
            status = "stopped early"
        else:
            status = "unfinished"
        trials.append(Trial(run_dir, params, seed, status, final, steps))
    return sorted(trials, key=lambda t: t.run_dir.name)


def report(trials: list[Trial], sweep: Sweep, sweep_dir: Path) -> None:
    text = table(trials, sweep)
    (sweep_dir / "trials.md").write_text(text + "\n")
    print(text)
    ranked = summarize(trials, sweep)
    finished = [(params, group) for params, group in ranked if any(t.status == "done" for t in group)]
    if not finished:
        print("\nNo trial finished, so there is no best configuration yet.")
        return
    best_params, best_group = finished[0]
    returns = [t.final_return for t in best_group if t.status == "done"]
    best = write_best(sweep, best_params, sweep_dir / "best.yaml")
    print(f"\nBest configuration: {best_params or '(the base)'}, final return {sum(returns) / len(returns):.1f} "
          f"over {len(returns)} seed(s); train it with: python train.py --config {best}")
    from pathwise.commands import plot

    run_dirs = [t.run_dir for _, group in finished[:TOP_CURVES] for t in group
                if (t.run_dir / "evaluations.csv").is_file()]
    try:
        print(f"Curves of the best {min(TOP_CURVES, len(finished))}: "
              f"{plot.plot(run_dirs, sweep_dir / 'best.png', title=sweep.name)}")
    except plot.PlotError as e:
        print(f"No curves drawn: {e}")


def run(args) -> int:
    try:
        import ray  # noqa: F401
        from ray import tune
    except ImportError:
        raise UserError('sweep.py needs Ray Tune: pip install -e ".[sweep]"') from None
    sweep = load_sweep(args.sweep_file)
    sweep_dir = Path(args.sweep_dir or Path("sweeps") / sweep.name).resolve()
    tune_dir = sweep_dir / "tune"
    if args.resume:
        if not tune_dir.is_dir():
            raise UserError(f"{sweep_dir} holds no sweep to resume; start it without --resume.")
        sweep = load_sweep(sweep_dir / "sweep.yaml")  # the sweep as it was started
    elif tune_dir.exists():
        raise UserError(f"{sweep_dir} already holds a sweep; continue it with --resume, or give another "
                        "--sweep-dir.")
    else:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.sweep_file, sweep_dir / "sweep.yaml")
    start_ray(args.address, sweep_dir)
    import ray

    try:
        trainable = tune.with_resources(tune.with_parameters(run_trial, sweep=sweep, sweep_dir=str(sweep_dir)),
                                        {"cpu": sweep.resources["cpu"], "gpu": sweep.resources["gpu"]})
        if args.resume and sweep.searcher != "random":
            # The searcher's state lives in Tune's experiment: restore it. (The random searcher's trials are
            # known in advance, so a resumed random sweep runs them all again: finished runs report their end
            # at once, unfinished ones go on from their checkpoints.)
            latest = sorted(p for p in tune_dir.iterdir() if p.is_dir())[-1]
            tuner = tune.Tuner.restore(str(latest), trainable, resume_unfinished=True)
        else:
            tuner = new_tuner(trainable, sweep, tune_dir, args.max_concurrent)
        results = tuner.fit()
    finally:
        ray.shutdown()
    trials = collect(results, sweep, sweep_dir)
    report(trials, sweep, sweep_dir)
    if any(t.status == "unfinished" for t in trials):
        print(f"\nThe sweep stopped before its end; continue it with: python sweep.py {args.sweep_file} "
              f"--sweep-dir {sweep_dir} --resume", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sweep.py", description=__doc__.split("\n\n")[0],
                                     epilog="The sweep file's keys are shown in configs/sweeps/pendulum_sac.yaml.")
    parser.add_argument("sweep_file", help="the sweep's YAML file")
    parser.add_argument("--address", help="a running Ray cluster to use: auto or HOST:PORT (default: a local Ray "
                                          "for this command)")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials at a time (default: as many as "
                                                                         "the resources allow)")
    parser.add_argument("--sweep-dir", metavar="DIR", help="where the sweep's trials and results go (default: "
                                                           "sweeps/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep in the sweep dir")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
