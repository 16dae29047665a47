"""Export a saved policy's deterministic actor as a self-contained file that runs with torch alone.

    python export.py runs/Pendulum-v1__sac__s1__20260101-120000 -o pendulum_policy.pt2

Then, without pathwise installed:

    policy = torch.export.load("pendulum_policy.pt2").module()
    action = policy(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))  # (1, A), in the env's bounds
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export.py", description="Export a saved policy with torch.export.")
    parser.add_argument("path", help="a run directory (see --policy) or a checkpoint file")
    parser.add_argument("--policy", choices=("last", "best"), default="last",
                        help="of a run directory: its last checkpoint, or the policy of its best evaluation "
                             "(checkpoints/best.pt) [default: last]")
    parser.add_argument("-o", "--output", default="policy.pt2", help="file to write [default: policy.pt2]")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from pathwise import export_policy, load_policy
    from pathwise.errors import UserError

    try:
        policy = load_policy(args.path, which=args.policy)
        path = export_policy(policy, args.output)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {path}: the deterministic policy for {policy.env_id} ({policy.env_steps:,} env steps), "
          f"observations (B, {policy.obs_dim}) -> actions in the env's bounds.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
