"""Evaluate a saved policy in a fresh environment, optionally recording a video of each episode.

    python evaluate.py runs/Pendulum-v1__sac__s1__20260101-120000 --episodes 10
    python evaluate.py PATH --video videos/ --json
"""

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="evaluate.py", description="Evaluate a saved pathwise policy.")
    parser.add_argument("path", help="a run directory (see --policy) or a checkpoint file")
    parser.add_argument("--policy", choices=("last", "best"), default="last",
                        help="of a run directory: its last checkpoint, or the policy of its best evaluation "
                             "(checkpoints/best.pt) [default: last]")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to run [default: 10]")
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed SEED + i [default: 0]")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic mode")
    parser.add_argument("--env", help="evaluate on this env id instead of the one the policy was trained on "
                                      "(made without the training run's env_kwargs; each action still held for "
                                      "the run's --action-repeat env steps)")
    parser.add_argument("--video", metavar="DIR", help="write an mp4 of every episode into DIR")
    parser.add_argument("--device", default="cpu", help="torch device for the policy [default: cpu]")
    parser.add_argument("--json", action="store_true",
                        help="write one JSON object to stdout, and the text lines to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.video:  # headless rendering: pygame (classic control) and MuJoCo need no display this way
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("MUJOCO_GL", "egl")
    from pathwise import load_policy
    from pathwise.envs import make_env
    from pathwise.errors import UserError
    from pathwise.evaluation import run_episodes

    try:
        if args.episodes < 1:
            raise UserError(f"--episodes must be at least 1, got {args.episodes}.")
        policy = load_policy(args.path, device=args.device, which=args.policy)
        env_id = args.env or policy.env_id
        env = make_env(env_id, render_mode="rgb_array" if args.video else None, rescale_actions=False,
                       env_kwargs=policy.env_kwargs if env_id == policy.env_id else None,
                       action_repeat=policy.action_repeat)
        policy.check_env(env)
        result = run_episodes(
            lambda obs: policy.act(obs, deterministic=not args.stochastic), env, args.episodes, args.seed,
            Path(args.video) if args.video else None, name=env_id.replace("/", "-") + "-episode")
        env.close()
        returns, lengths, videos = result.returns, result.lengths, result.videos
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = sys.stderr if args.json else sys.stdout  # with --json, stdout holds the JSON alone
    mode = "stochastic" if args.stochastic else "deterministic"
    print(f"{env_id}: policy trained for {policy.env_steps:,} env steps, {args.episodes} {mode} episodes",
          file=text)
    print(f"return {returns.mean():.1f} +- {returns.std():.1f}   (min {returns.min():.1f}, max {returns.max():.1f})",
          file=text)
    print(f"episode length {lengths.mean():.1f} +- {lengths.std():.1f}", file=text)
    if result.success_rate is not None:
        print(f"success rate {result.success_rate:.2f} ({int(result.successes.sum())} of {args.episodes})", file=text)
    for video in videos:
        print(f"video: {video}", file=text)
    if args.json:
        print(json.dumps({"env_id": env_id, "env_steps": policy.env_steps, "episodes": args.episodes,
                          "deterministic": not args.stochastic, "mean_return": float(returns.mean()),
                          "std_return": float(returns.std()), "returns": returns.tolist(),
                          "mean_length": float(lengths.mean()), "lengths": lengths.tolist(),
                          "success_rate": result.success_rate,
                          "videos": [str(v) for v in videos]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
