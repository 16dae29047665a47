"""`train.py`'s command line: one flag per setting of the run and of the chosen agent, with the field's docstring
as its help and the value this run would use (presets applied) as its default."""

import argparse
import dataclasses
import difflib
import shutil
import sys
import types
import typing
from typing import Literal

from pathwise.agents.registry import AGENTS
from pathwise.config import (
    DEFAULT_AGENT,
    Config,
    check_layer,
    flag,
    layered,
    named_presets,
    resolve,
    run_fields,
    section_fields,
    settings,
)
from pathwise.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse names an unknown flag; add the closest real one.
        if message.startswith("unrecognized arguments:"):
            flags = [o for a in self._actions if a.help != argparse.SUPPRESS for o in a.option_strings
                     if o.startswith("--")]
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.6)
                if close:
                    message += f" (did you mean {close[0]}?)"
                    break
        self.exit(2, f"{self.prog}: error: {message}\n")


def _metavar(tp, name: str) -> str:
    """N for integers, X for numbers, {a,b} for choices, the name for the rest: short enough for one line."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return _metavar(args[0], name)
    if typing.get_origin(tp) is Literal:
        return "{" + ",".join(args) + "}"
    if typing.get_origin(tp) is tuple:
        return _metavar(args[0], name)
    if typing.get_origin(tp) is dict:
        return "KEY=VALUE"
    return {int: "N", float: "X"}.get(tp, name.upper().replace("_", "-"))


def _add_flag(group, name: str, tp, value, doc: str, hidden: bool = False) -> None:
    if tp in (bool, bool | None):  # --name / --no-name; None is the program's choice
        shown = "auto" if value is None else "yes" if value else "no"
        group.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                           help=argparse.SUPPRESS if hidden else f"{doc} [default: {shown}]")
        return
    is_list = isinstance(value, (tuple, dict))
    if isinstance(value, dict):
        value = tuple(f"{k}={v}" for k, v in value.items())
    shown = (" ".join(map(str, value)) or "none") if is_list else ("none" if value is None else value)
    group.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, nargs="+" if is_list else None,
                       metavar=_metavar(tp, name), help=argparse.SUPPRESS if hidden else f"{doc} [default: {shown}]")


def command_flags() -> list[tuple[str, dict]]:
    """The flags of the command itself, beside the config's fields."""
    return [
        ("--config", dict(metavar="FILE|NAME", help="YAML file of overrides, applied after the presets, or a named "
                          f"preset: {', '.join(named_presets())} (configs/named/).")),
        ("--resume", dict(metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint (then only "
                          f"{', '.join(flag(f) for f in run_fields('resumable'))} may be given).")),
        ("--print-config", dict(action="store_true", help="print the resolved config as YAML and exit without "
                                "training.")),
    ]


def build_parser(name: str = DEFAULT_AGENT, layers: dict | None = None) -> argparse.ArgumentParser:
    """The parser for a run of the agent `name` whose values before the flags are `layers` (the presets and
    --config file, merged): the run's flags and the agent's, each showing the value it would have. The other
    agents' flags are parsed but hidden, so that one given to the wrong agent is refused by name."""
    run, section = check_layer(layers or {}, "the merged configuration", name)
    width = max(110, shutil.get_terminal_size().columns)
    parser = _Parser(
        prog="train.py",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=30, width=width),
        description="Train a pathwise-gradient agent on a Gymnasium continuous-control environment. Values come "
                    "from the defaults, the presets in configs/ (the env's, then the agent's for that env), "
                    "--config, then these flags; each flag's default below is the value this run would use.",
    )
    for spelled, options in command_flags():
        parser.add_argument(spelled, **options)
    run_group = parser.add_argument_group("the run")
    agent_group = parser.add_argument_group(f"{name} hyperparameters (--agent {name}; in YAML, under '{name}:')")
    shown = set()
    for path, tp, value, doc in settings(name, run, section):
        _add_flag(agent_group if len(path) > 1 else run_group, path[-1], tp, value, doc)
        shown.add(path[-1])
    for cls in AGENTS.values():
        for field_name, tp, value, doc in section_fields(cls):
            if field_name not in shown:
                _add_flag(parser, field_name, tp, value, doc, hidden=True)
                shown.add(field_name)
    return parser


def flag_reference() -> str:
    """docs/flags.md: every flag of train.py, the run's and each agent's, with its default and its help (the field's
    docstring), as Markdown. `python -m pathwise.cli > docs/flags.md` writes it; a test checks it is current."""
    def rows(fields) -> list[str]:
        out = []
        for name, tp, value, doc in fields:
            if name == "agent":
                value = DEFAULT_AGENT
            elif tp in (bool, bool | None):
                value = "auto" if value is None else "yes" if value else "no"
            elif isinstance(value, dict):
                value = " ".join(f"{k}={v}" for k, v in value.items()) or "none"
            elif isinstance(value, tuple):
                value = " ".join(map(str, value))
            spelled = f"{flag(name)} / --no-{name.replace('_', '-')}" if tp in (bool, bool | None) else flag(name)
            out.append(f"| `{spelled}` | {'none' if value is None else value} | {doc.replace('|', '/')} |")
        return out

    commands = []
    for spelled, options in command_flags():
        words = f"{spelled} {options['metavar']}" if "metavar" in options else spelled
        cell = words.replace("|", r"\|")  # a bar inside a table cell
        commands.append(f"| `{cell}` | {options['help']} |")
    lines = ["# Flags", "", "Every flag of `train.py` (and `pathwise-train`), with its default before presets; "
             "`python train.py [--env ID] [--agent NAME] --help` shows the values a run would use. Generated by "
             "`python -m pathwise.cli > docs/flags.md`.", "", "## The command", "", "| flag | meaning |", "|---|---|",
             *commands,
             "", "## The run", "", "| flag | default | meaning |", "|---|---|---|", *rows(section_fields(Config))]
    for name, cls in AGENTS.items():
        lines += ["", f"## `--agent {name}`: {cls.__doc__.splitlines()[0]}", "", "| flag | default | meaning |",
                  "|---|---|---|", *rows(section_fields(cls))]
    return "\n".join(lines) + "\n"


def place_flags(flags: dict, name: str) -> dict:
    """Flat flags {field: value} as a nested override: the chosen agent's hyperparameters under its section."""
    nested: dict = {}
    run = {f.name for f in dataclasses.fields(Config)}
    own = {f.name for f in dataclasses.fields(AGENTS[name])}
    for key, value in flags.items():
        if key in run:
            nested[key] = value
        elif key in own:
            nested.setdefault(name, {})[key] = value
        else:
            owners = [other for other, cls in AGENTS.items() if key in {f.name for f in dataclasses.fields(cls)}]
            owners_text = ", ".join(owners[:-1]) + " and " + owners[-1] if len(owners) > 1 else owners[0]
            raise UserError(f"{flag(key)} is a flag of {owners_text}, not of {name} (the agent is chosen with "
                            f"--agent).")
    return nested


def parse_args(argv: list[str] | None = None) -> tuple[Config | None, argparse.Namespace, dict]:
    """(the resolved config, or None with --resume, which takes the run's own; the namespace; the flags given,
    nested as a config override)."""
    argv = sys.argv[1:] if argv is None else argv
    # First the flags that decide the defaults of the others: the agent, the env and the config file.
    pre = argparse.ArgumentParser(add_help=False)
    for early_flag in ("--agent", "--env", "--config", "--resume"):
        pre.add_argument(early_flag)
    known, _ = pre.parse_known_args(argv)
    early = {k: v for k, v in (("env", known.env), ("agent", known.agent)) if v}
    name, layers = (DEFAULT_AGENT, {}) if known.resume else layered(early, known.config)
    args = build_parser(name, layers).parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "resume", "print_config")}
    if args.resume:
        if args.config:
            raise UserError("--config cannot be combined with --resume: a resumed run keeps its own config.")
        return None, args, flags
    return resolve(place_flags(flags, name), args.config), args, flags


if __name__ == "__main__":
    print(flag_reference(), end="")
