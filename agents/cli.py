"""`train.py`'s command line: one flag per config field, with the field's docstring as its help."""

import argparse
import difflib
import sys

from agents.config import Config, leaf_fields, resolve
from agents.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse names an unknown flag; add the closest real one.
        if message.startswith("unrecognized arguments:"):
            flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.6)
                if close:
                    message += f" (did you mean {close[0]}?)"
                    break
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="train.py",
        description="Train a pathwise-gradient agent (SAC) on a Gymnasium continuous-control environment. "
                    "Defaults come from the env's preset in configs/, then --config, then these flags.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of overrides, applied after the env's preset.")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its latest checkpoint (then only --total-steps, "
                             "--device, --threads, --wandb, --log-every and --compile may be given).")
    for path, _, default, doc in leaf_fields(Config):
        name = path[-1]
        is_list = isinstance(default, tuple)
        shown = " ".join(map(str, default)) if is_list else ("none" if default is None else default)
        flag, dest, help_text = "--" + name.replace("_", "-"), ".".join(path), f"{doc} [default: {shown}]"
        if isinstance(default, bool):
            parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                                help=f"{doc} [default: {'yes' if default else 'no'}]")
            continue
        parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, nargs="+" if is_list else None,
                            metavar=name.upper().replace("_", "-"), help=help_text)
    return parser


def _nested(flat: dict) -> dict:
    out: dict = {}
    for dotted, value in flat.items():
        *sections, key = dotted.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return out


def parse_args(argv: list[str] | None = None) -> tuple[Config | None, argparse.Namespace, dict]:
    """The resolved config (None with --resume, which takes the run's own), the namespace, and the flags given."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    flags = _nested({k: v for k, v in vars(args).items() if k not in ("config", "resume")})
    if args.resume:
        if args.config:
            raise UserError("--config cannot be combined with --resume: a resumed run keeps its own config.")
        return None, args, flags
    return resolve(flags, args.config), args, flags
