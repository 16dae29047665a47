"""Export a saved policy's deterministic actor as a self-contained file: torch.export (.pt2, runs with torch
alone) or ONNX (.onnx, runs with onnxruntime, without torch).

    python export.py runs/Pendulum-v1__sac__s1__20260101-120000 -o pendulum_policy.pt2
    python export.py runs/Pendulum-v1__sac__s1__20260101-120000 --format onnx -o pendulum_policy.onnx

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
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
