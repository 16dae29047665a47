"""Would a running average of the actor's weights evaluate better than the actor itself? Hopper's and Walker2d's
deterministic evaluations swing from a full gait to a fall and back between one evaluation and the next
(docs/benchmarks.md), so a budget's number is partly the luck of the step it lands on.

One training run, exactly as train.py runs it, with averages of its actor kept beside it: after each env step's
updates, each average moves `rate` of the way to the actor's weights and normalization statistics (0.01 averages
over about the last 100 env steps). At each of the run's evaluations every average is evaluated on the same seeded
episodes as the actor: a paired comparison on one training trajectory, which the averages do not touch (the run's
evaluations.csv is the actor's, as a plain run's). train.py's `--policy-average RATE` makes one such average the
run's policy; this measures several against the actor on one run.

    python benchmarks/policy_average.py --rates 0.01 0.002 -- --env Hopper-v5 --config sample-efficient \\
        --total-steps 100000 --run-dir runs/hopper-averaged
    python benchmarks/mujoco.py --envs Hopper-v5 --agents se-catlinf-hl-wn --seeds 2 --average-rates 0.01 0.002

Writes RUN_DIR/averaged.csv: env_steps, rate, return_mean, return_std, length_mean.
"""

import argparse
import csv
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # in place of benchmarks/, whose mujoco.py would shadow the mujoco package
from pathwise.cli import parse_args  # noqa: E402
from pathwise.evaluation import PolicyAverage, run_episodes  # noqa: E402
from pathwise.run import _run, build_trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="policy_average.py --rates R [R ...] -- TRAIN_ARGS")
    parser.add_argument("--rates", type=float, nargs="+", required=True,
                        help="each average's step towards the actor per env step, in (0, 1]")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    if not all(0 < rate <= 1 for rate in args.rates):
        parser.error("each rate must lie in (0, 1].")
    config, _, _ = parse_args(argv[split + 1:])
    if config is None:
        parser.error("a resumed run is not supported: give a new run's flags after --.")
    trainer = build_trainer(config)
    actor = trainer.agent.actor
    averages = {rate: PolicyAverage(actor, rate) for rate in args.rates}  # what --policy-average RATE keeps
    out = Path(trainer.run_dir) / "averaged.csv"
    with open(out, "w", newline="") as f:
        csv.writer(f).writerow(["env_steps", "rate", "return_mean", "return_std", "length_mean"])

    update = trainer.update

    def update_and_average(env_steps: int) -> float:
        took = update(env_steps)
        for average in averages.values():
            average.update(actor)
        return took

    def evaluate_averages(env_steps: int, *_) -> None:
        rows = []
        for rate, average in averages.items():
            def policy(obs, average=average):
                with torch.no_grad():
                    return average.actor(trainer._agent_obs(obs)).mode.cpu().numpy()
            result = run_episodes(policy, trainer.evaluator.env, config.eval_episodes, trainer.evaluator.seed)
            rows.append([env_steps, rate, f"{result.returns.mean():.4f}", f"{result.returns.std():.4f}",
                         f"{result.lengths.mean():.1f}"])
        with open(out, "a", newline="") as f:
            csv.writer(f).writerows(rows)

    trainer.update = update_and_average
    trainer.on_evaluation.append(evaluate_averages)
    _run(trainer)
    print(f"Averaged actors' evaluations: {out} (the actor's: {out.parent / 'evaluations.csv'})")


if __name__ == "__main__":
    main()
