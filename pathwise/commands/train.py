"""Train a pathwise-gradient agent on a Gymnasium continuous-control environment.

    python train.py --env Pendulum-v1
    python train.py --env HalfCheetah-v5 --agent crossq --print-config
    python train.py --resume runs/Pendulum-v1__sac__s1__20260101-120000 [--total-steps 40000]
    python train.py --help
"""

import sys

from pathwise.cli import parse_args
from pathwise.config import Config, to_yaml
from pathwise.errors import UserError
from pathwise.run import resume, resume_config, train
from pathwise.trainer import Interrupted


def headline(config: Config) -> str:
    """The line a new run prints before it trains: agent, env, length and what shapes its steps."""
    notes = f"{config.num_envs} {config.vector_mode} envs, " if config.num_envs > 1 else ""
    notes += "staggered episodes, " if config.stagger_episodes else ""
    notes += f"each action held for {config.action_repeat} env steps, " if config.action_repeat > 1 else ""
    notes += f"hindsight relabelling with {config.her_relabels} future goals a transition, " if config.her else ""
    return (f"Training {config.agent.name.upper()} on {config.env} for {config.total_steps:,} env steps "
            f"({notes}seed {config.seed}).")


def main(argv: list[str] | None = None) -> int:
    try:
        config, args, flags = parse_args(argv)
        if args.print_config:
            shown = config if config is not None else resume_config(args.resume, flags, to_train=False)[0]
            print(to_yaml(shown), end="")
            return 0
        if config is None:
            summary = resume(args.resume, flags, announce=lambda: print(f"Resuming {args.resume}.", flush=True))
        else:
            summary = train(config, announce=lambda: print(headline(config), flush=True))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C while the run was being built or closed, outside the training loop
        print("\nStopped at once; the checkpoints written before are kept.", file=sys.stderr)
        return 130
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
