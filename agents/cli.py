"""`train.py`'s command line: one flag per config field, with the field's docstring as its help."""

import argparse
import difflib
import shutil
import sys
import types
import typing
from typing import Literal

from agents.config import Config, leaf_fields, load_yaml, resolve
from agents.errors import UserError
from agents.registry import AGENTS


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


def flag_paths() -> dict[str, list[tuple[str, ...]]]:
    """Each flag's name (a field name) and the config paths it can set: one for a top-level field, one per
    agent section for an agent hyperparameter (--gamma sets sac.gamma or td3.gamma, after --agent)."""
    paths: dict[str, list[tuple[str, ...]]] = {}
    for path, *_ in leaf_fields(Config):
        paths.setdefault(path[-1], []).append(path)
    return paths


def _metavar(tp, name: str) -> str:
    """N for integers, X for numbers, {a,b} for choices, the name for the rest: short enough for one line."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return _metavar(args[0], name)
    if typing.get_origin(tp) is Literal:
        return "{" + ",".join(args) + "}"
    if typing.get_origin(tp) is tuple:
        return _metavar(args[0], name)
    return {int: "N", float: "X"}.get(tp, name.upper().replace("_", "-"))


def build_parser() -> argparse.ArgumentParser:
    width = max(110, shutil.get_terminal_size().columns)
    parser = _Parser(
        prog="train.py",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=30, width=width),
        description="Train a pathwise-gradient agent on a Gymnasium continuous-control environment. Defaults come "
                    "from the presets in configs/ (the env's, then the agent's for that env), then --config, then "
                    "these flags. Agent hyperparameters "
                    "apply to the agent chosen with --agent; [sac, td3] says which agents have a flag.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of overrides, applied after the presets.")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its latest checkpoint (then only --total-steps, "
                             "--device, --threads, --wandb, --log-every and --compile may be given).")
    seen = set()
    for path, tp, default, doc in leaf_fields(Config):
        name = path[-1]
        if name in seen:
            continue
        seen.add(name)
        owners = [p[0] for p in flag_paths()[name] if len(p) > 1]
        where = f" [{', '.join(owners)}]" if owners else ""
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                                help=f"{doc}{where} [default: {'yes' if default else 'no'}]")
            continue
        is_list = isinstance(default, tuple)
        shown = " ".join(map(str, default)) if is_list else ("none" if default is None else default)
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, nargs="+" if is_list else None,
                            metavar=_metavar(tp, name), help=f"{doc}{where} [default: {shown}]")
    return parser


def place_flags(flags: dict, agent: str) -> dict:
    """Flat flags {name: value} as a nested override, agent hyperparameters under the chosen agent's section."""
    nested: dict = {}
    paths = flag_paths()
    for name, value in flags.items():
        options = paths[name]
        if options == [(name,)]:
            nested[name] = value
            continue
        if (agent, name) not in options:
            owners = [p[0] for p in options]
            owners_text = ", ".join(owners[:-1]) + " and " + owners[-1] if len(owners) > 1 else owners[0]
            raise UserError(f"--{name.replace('_', '-')} is a flag of {owners_text}, not of {agent} "
                            f"(the agent is chosen with --agent).")
        nested.setdefault(agent, {})[name] = value
    return nested


def parse_args(argv: list[str] | None = None) -> tuple[Config | None, argparse.Namespace, dict]:
    """The resolved config (None with --resume, which takes the run's own), the namespace, and the flags given."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "resume")}
    if args.resume:
        if args.config:
            raise UserError("--config cannot be combined with --resume: a resumed run keeps its own config.")
        return None, args, flags
    user = load_yaml(args.config) if args.config else {}
    agent = flags.get("agent") or user.get("agent") or Config.agent
    if agent not in AGENTS:
        raise UserError(f"unknown agent {agent!r}; the agents are {', '.join(AGENTS)}.")
    return resolve(place_flags(flags, agent), args.config), args, flags
