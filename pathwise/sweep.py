"""Sweeps: the sweep file, the configurations it asks for, one trial as an ordinary run, and the trial table.

Ray Tune schedules the trials (see sweep.py); this module holds what does not need Ray, and the trial function
that Ray's workers run.
"""

import csv
import itertools
import math
import random
import statistics
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pathwise.config import Config, agent_name, check_layer, coerce, leaf_fields, load_yaml, merge, resolve, save_yaml
from pathwise.errors import UserError

DOMAINS = ("grid", "choice", "uniform", "loguniform", "randint")
SEARCHERS = ("random", "optuna")
METRIC = "eval/return_mean"
# Set by the sweep for each trial, so a sweep file may not set them.
TRIAL_FIELDS = ("seed", "run_dir", "wandb_group")


@dataclass(frozen=True)
class Sweep:
    name: str
    base: dict
    space: dict[str, dict]  # a config path ("sac.actor_lr") -> {domain: arguments}
    seeds: tuple[int, ...] = (1,)
    num_samples: int = 1
    searcher: str = "random"
    asha: dict | None = None  # {"grace_period": env steps, "reduction_factor": n}
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    metric: str = METRIC
    mode: str = "max"

    @property
    def grid(self) -> dict[str, list]:
        return {path: spec["grid"] for path, spec in self.space.items() if "grid" in spec}


def load_sweep(path: str | Path) -> Sweep:
    """The sweep file at `path`, checked: one sentence on anything wrong."""
    data = load_yaml(path)
    known = {"name", "base", "space", "seeds", "num_samples", "searcher", "asha", "resources", "metric", "mode"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown key '{unknown[0]}' in sweep file {path}; the keys are {', '.join(sorted(known))}.")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise UserError(f"'base' in {path} must be a mapping of config keys, as in a train.py --config file.")
    for name in TRIAL_FIELDS:
        if name in base:
            raise UserError(f"'base' in {path} sets {name}, which the sweep sets for each trial; remove it.")
    check_layer(base, f"the base of {path}", agent_name(base, f"the base of {path}"))
    resolved = resolve(base)  # the base alone must make a valid run, and one that is evaluated
    if resolved.eval_episodes == 0:
        raise UserError(f"the base of {path} sets eval_episodes to 0, but a sweep ranks trials by evaluation.")
    paths = {".".join(p): tp for p, tp, *_ in leaf_fields(resolved)}
    space = data.get("space") or {}
    if not isinstance(space, dict):
        raise UserError(f"'space' in {path} must map config keys to domains, e.g. sac.actor_lr: {{loguniform: "
                        "[1.0e-4, 1.0e-3]}.")
    for key, spec in space.items():
        if key == "agent":
            raise UserError(f"'space' in {path} names 'agent': a sweep varies one agent's settings (each agent has "
                            "its own); run one sweep per agent.")
        if key not in paths or key in TRIAL_FIELDS:
            raise UserError(f"'space' in {path} names '{key}', which is not a config key a sweep can vary.")
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DOMAINS):
            raise UserError(f"'space.{key}' in {path} must be one of {', '.join(DOMAINS)} with its values, "
                            f"e.g. {{choice: [a, b]}}; got {spec!r}.")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args or (kind not in ("grid", "choice") and len(args) != 2):
            raise UserError(f"'space.{key}' in {path}: {kind} takes "
                            f"{'a list of values' if kind in ('grid', 'choice') else 'two bounds [low, high]'}.")
        if kind in ("grid", "choice"):
            for value in args:
                coerce(value, paths[key], f"space.{key} in {path}")
        else:
            number = int if kind == "randint" else float
            if number not in (paths[key], *typing.get_args(paths[key])):
                draws = "integers" if number is int else "real numbers"
                raise UserError(f"'space.{key}' in {path}: {kind} draws {draws}, but {key} is not such a setting; "
                                "use choice.")
            low, high = (coerce(v, number, f"space.{key} in {path}") for v in args)
            if not low < high or (kind == "loguniform" and low <= 0):
                extra = " and low > 0" if kind == "loguniform" else ""
                raise UserError(f"'space.{key}' in {path}: {kind} needs low < high{extra}, got {args}.")
    for name in ("asha", "resources"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            example = "{cpu: 1, gpu: 0}" if name == "resources" else "{grace_period: 4000}"
            raise UserError(f"{name} in {path} must be a mapping, e.g. {example}.")
    sweep = Sweep(
        name=str(data.get("name") or Path(path).stem), base=base, space=space,
        seeds=tuple(coerce(data.get("seeds", [1]), tuple[int, ...], f"seeds in {path}")),
        num_samples=coerce(data.get("num_samples", 1), int, f"num_samples in {path}"),
        searcher=data.get("searcher", "random"), asha=data.get("asha"),
        resources={"cpu": 1, "gpu": 0, **(data.get("resources") or {})},
        metric=data.get("metric", METRIC), mode=data.get("mode", "max"))
    if not sweep.seeds or sweep.num_samples < 1:
        raise UserError(f"{path} needs at least one seed and num_samples >= 1.")
    if sweep.searcher not in SEARCHERS:
        raise UserError(f"searcher in {path} must be one of {', '.join(SEARCHERS)}, got {sweep.searcher!r}.")
    if sweep.searcher == "optuna" and sweep.grid:
        raise UserError(f"{path}: the optuna searcher takes no grid domains; use choice instead.")
    if sweep.metric != METRIC or sweep.mode not in ("max", "min"):
        raise UserError(f"{path}: the metric is {METRIC} and mode is max or min.")
    if sweep.asha is not None and not (isinstance(sweep.asha, dict) and set(sweep.asha) <= {"grace_period",
                                                                                        "reduction_factor"}):
        raise UserError(f"asha in {path} takes grace_period (env steps) and reduction_factor.")
    for key, value in (sweep.asha or {}).items():
        coerce(value, int if key == "grace_period" else float, f"asha.{key} in {path}")
    if set(sweep.resources) - {"cpu", "gpu"}:
        raise UserError(f"resources in {path} takes cpu and gpu (per trial).")
    for key, value in sweep.resources.items():
        coerce(value, float, f"resources.{key} in {path}")
    return sweep


def configurations(sweep: Sweep, seed: int = 0) -> list[dict]:
    """The random searcher's configurations: every point of the grid domains, num_samples times, each with its
    own draw of the other domains. Drawn here (not per trial) so that every seed of a configuration runs it."""
    rng = random.Random(seed)
    grid = sweep.grid
    configs = []
    for _ in range(sweep.num_samples):
        for point in itertools.product(*grid.values()):
            params = dict(zip(grid, point))
            for key, spec in sweep.space.items():
                kind, args = next(iter(spec.items()))
                if kind == "choice":
                    params[key] = rng.choice(args)
                elif kind == "uniform":
                    params[key] = rng.uniform(float(args[0]), float(args[1]))
                elif kind == "loguniform":
                    params[key] = math.exp(rng.uniform(math.log(float(args[0])), math.log(float(args[1]))))
                elif kind == "randint":
                    params[key] = rng.randint(int(args[0]), int(args[1]))
            configs.append(params)
    return configs


def nested(params: dict) -> dict:
    """{"sac.actor_lr": x} -> {"sac": {"actor_lr": x}}."""
    out: dict = {}
    for key, value in params.items():
        *sections, leaf = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return out


def trial_config(sweep: Sweep, params: dict, seed: int, run_dir: Path) -> Config:
    # Torch gets as many threads as the trial has CPUs (unless the base says otherwise): more would oversubscribe
    # the cores that the other trials are using, which slows small matmuls down many times over.
    threads = {"threads": max(1, int(sweep.resources["cpu"]))} if "threads" not in sweep.base else {}
    return resolve(merge(merge({**threads, **sweep.base}, nested(params)),
                         {"seed": seed, "run_dir": str(run_dir), "wandb_group": sweep.name}))


def identify(trial: dict, trial_id: str, sweep: Sweep, sweep_dir: Path) -> tuple[dict, int, Path]:
    """(params, seed, run directory) of a trial from its Tune config. The random searcher's trials are named by
    configuration and seed, so that a sweep started again finds each trial's run where it left it."""
    if "config" in trial:
        index, seed = trial["config"], trial["seed"]
        return configurations(sweep)[index], seed, sweep_dir / "trials" / f"c{index:03d}_seed{seed}"
    seed = sweep.seeds[trial.get("__trial_index__", 0)]
    return trial.get("params", {}), seed, sweep_dir / "trials" / f"{trial_id}_seed{seed}"


def run_trial(trial: dict, sweep: Sweep, sweep_dir: str) -> None:
    """One trial, run by a Ray worker: an ordinary run in SWEEP_DIR/trials/, reporting each evaluation. Started
    again (a resumed sweep), it goes on from its run's latest checkpoint, or reports its end if it had finished."""
    from ray import tune

    from pathwise.checkpoint import has_checkpoint, latest_checkpoint, load_checkpoint
    from pathwise.run import build_trainer, resume_trainer

    params, seed, run_dir = identify(trial, tune.get_context().get_trial_id(), sweep, Path(sweep_dir))
    config = trial_config(sweep, params, seed, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    if has_checkpoint(run_dir):
        done = load_checkpoint(latest_checkpoint(run_dir))["env_steps"]
    # trial.yaml: what the trial runs, and the env step it (re)started from each time (resumes come after 0).
    record = run_dir / "trial.yaml"
    starts = (yaml.safe_load(record.read_text()) or {}).get("starts", []) if record.is_file() else []
    record.write_text(yaml.safe_dump({"params": params, "seed": seed, "starts": [*starts, done]}, sort_keys=False))
    if done >= config.total_steps:  # finished in an earlier start: report what it recorded
        rows = list(csv.DictReader(open(run_dir / "evaluations.csv")))
        tune.report({METRIC: float(rows[-1]["return_mean"]), "env_steps": done} if rows else {"env_steps": done})
        return
    if not done:  # nothing to resume from: a fresh run, without the evaluations of an earlier start
        (run_dir / "evaluations.csv").unlink(missing_ok=True)
    trainer = resume_trainer(run_dir, {}) if done else build_trainer(config)

    def report(step: int, mean: float, std: float) -> None:
        if step < config.total_steps:  # (the run saves at its end anyway)
            trainer.save()  # first: a trial that Ray stops after this report keeps its progress up to here
        tune.report({METRIC: mean, "eval/return_std": std, "env_steps": step})

    trainer.on_evaluation.append(report)
    try:
        trainer.run()
    finally:
        trainer.close()


@dataclass
class Trial:
    run_dir: Path
    params: dict
    seed: int
    status: str  # done, stopped early (ASHA), failed: ..., unfinished
    final_return: float | None
    env_steps: int


def summarize(trials: list[Trial], sweep: Sweep) -> list[tuple[dict, list[Trial]]]:
    """Configurations (the params without the seed) with their trials, best first by the mean final return of
    their finished seeds; configurations with no finished seed come last."""
    groups: list[tuple[dict, list[Trial]]] = []
    for trial in trials:
        for params, members in groups:
            if params == trial.params:
                members.append(trial)
                break
        else:
            groups.append((trial.params, [trial]))
    sign = 1 if sweep.mode == "max" else -1

    def score(group):
        finished = [t.final_return for t in group[1] if t.status == "done"]
        return (len(finished) > 0, sign * statistics.mean(finished) if finished else 0.0)
    return sorted(groups, key=score, reverse=True)


def write_best(sweep: Sweep, params: dict, path: Path) -> Path:
    """The best configuration as a train.py --config file (the base and the parameters, no seed)."""
    config = resolve(merge(sweep.base, nested(params)))
    save_yaml(config, path)
    return path


def trial_dirname(trial) -> str:
    """Tune's own folder for a trial (its bookkeeping; the run is in SWEEP_DIR/trials/): the trial id."""
    return trial.trial_id


def table(trials: list[Trial], sweep: Sweep) -> str:
    keys = list(sweep.space)
    lines = ["| trial | " + " | ".join(keys) + " | seed | env steps | final return | status |",
             "|---" * (len(keys) + 5) + "|"]
    for t in trials:
        shown = [f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float) else str(t.params.get(k)) for k in keys]
        ret = f"{t.final_return:.1f}" if t.final_return is not None else "-"
        lines.append(f"| {t.run_dir.name} | " + " | ".join(shown) + f" | {t.seed} | {t.env_steps:,} | {ret} | "
                     f"{t.status} |")
    return "\n".join(lines)
