"""Export a saved policy's deterministic actor as a self-contained file: torch.export (.pt2, runs with torch
alone) or ONNX (.onnx, runs with onnxruntime, without torch).

    python export.py runs/Pendulum-v1__sac__s1__20260101-120000 -o pendulum_policy.pt2
    python export.py runs/Pendulum-v1__sac__s1__20260101-120000 --format onnx -o pendulum_policy.onnx
    python export.py runs/Pendulum-v1__sac__s1__20260101-120000 --hub-folder pendulum-sac [--push-to-hub ORG/REPO]

Then, without pathwise installed:

    policy = torch.export.load("pendulum_policy.pt2").module()
    action = policy(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))  # (1, A), in the env's bounds

    session = onnxruntime.InferenceSession("pendulum_policy.onnx")
    action = session.run(None, {"obs": obs.astype(np.float32).reshape(1, -1)})[0]  # (1, A), in the env's bounds
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export.py", description="Export a saved policy with torch.export or "
                                                                   "as ONNX.")
    parser.add_argument("path", help="a run directory (see --policy) or a checkpoint file")
    parser.add_argument("--policy", choices=("last", "best"), default="last",
                        help="of a run directory: its last checkpoint, or the policy of its best evaluation "
                             "(checkpoints/best.pt) [default: last]")
    parser.add_argument("--format", choices=("pt2", "onnx"),
                        help="pt2 (torch.export) or onnx [default: from the output's suffix, else pt2]")
    parser.add_argument("-o", "--output", help="file to write [default: policy.pt2 or policy.onnx]")
    parser.add_argument("--hub-folder", metavar="DIR",
                        help="instead, write a shareable model folder: safetensors weights, config, evaluation, "
                             "model card, video, hashes (what the Hugging Face Hub expects)")
    parser.add_argument("--episodes", type=int, default=10,
                        help="deterministic evaluation episodes for the model folder's card [default: 10]")
    parser.add_argument("--push-to-hub", metavar="ORG/REPO",
                        help="upload the model folder to this Hub repository (needs the hub extra and a token)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.hub_folder or args.push_to_hub:
        return hub_folder(args)
    format = args.format or ("onnx" if args.output and Path(args.output).suffix == ".onnx" else "pt2")
    output = args.output or f"policy.{format}"
    from pathwise import export_policy, load_policy
    from pathwise.errors import UserError

    try:
        policy = load_policy(args.path, which=args.policy)
        path = export_policy(policy, output, format)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {path} ({format}): the deterministic policy for {policy.env_id} ({policy.env_steps:,} env "
          f"steps), observations (B, {policy.obs_dim}) -> actions in the env's bounds.")
    if policy.obs_keys:
        print("Its input is the Dict observation flattened: " + ", ".join(f"{key} ({size})" for key, size in
                                                                            policy.obs_keys) + ", end to end.")
    if policy.action_repeat > 1:
        print(f"It was trained holding each action for {policy.action_repeat} env steps: step the env "
              f"{policy.action_repeat} times with each action it gives.")
    return 0


def hub_folder(args) -> int:
    """The model folder of the run's policy, evaluated now, and uploaded if asked."""
    from pathwise import hub, load_policy
    from pathwise.checkpoint import load_checkpoint
    from pathwise.envs import make_env
    from pathwise.errors import UserError
    from pathwise.evaluation import run_episodes

    try:
        if args.episodes < 1:
            raise UserError(f"--episodes must be at least 1, got {args.episodes}.")
        if not args.hub_folder:
            raise UserError("--push-to-hub uploads the folder that --hub-folder DIR writes; give both.")
        payload, policy = load_checkpoint(args.path, args.policy), load_policy(args.path, which=args.policy)
        env = make_env(policy.env_id, rescale_actions=False, env_kwargs=policy.env_kwargs,
                       action_repeat=policy.action_repeat)
        result = run_episodes(lambda obs: policy.act(obs), env, args.episodes, seed=0)
        env.close()
        returns = result.returns
        evaluation = {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
                      "episodes": args.episodes, "deterministic": True, "returns": returns.tolist()}
        if result.success_rate is not None:
            evaluation["success_rate"] = result.success_rate
        videos = sorted(Path(args.path).glob("videos/*.mp4")) if Path(args.path).is_dir() else []
        folder = hub.write_folder(payload, evaluation, Path(args.hub_folder), videos[-1] if videos else None)
        print(f"Wrote {folder}: {policy.env_id}, {policy.env_steps:,} env steps, return "
              f"{evaluation['return_mean']:.1f} +- {evaluation['return_std']:.1f} over {args.episodes} episodes.")
        if args.push_to_hub:
            print(f"Uploaded to {hub.push(folder, args.push_to_hub)}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
