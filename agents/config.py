"""The run's configuration: a frozen dataclass tree, its YAML form, and the layering of presets and overrides.

Layers, each overriding the one before: the defaults (below, and each agent's section in its own file), the env's
preset `configs/<EnvId>.yaml`, the agent's preset for that env `configs/<agent>/<EnvId>.yaml`, a `--config FILE`,
and the flags.
"""

import ast
import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agents.errors import UserError
from agents.hyperparams import check
from agents.registry import AGENTS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class RunConfig:
    """What a run needs besides the agents' hyperparameters."""

    env: str = "Pendulum-v1"
    """Gymnasium environment id with a continuous (Box) action space."""
    agent: Literal[tuple(AGENTS)] = "sac"
    """The agent (README: agents); its hyperparameters are the flags of its section (its name, in YAML)."""
    seed: int = 1
    """Seeds torch, numpy and the environments."""
    total_steps: int = 1_000_000
    """Environment steps to train for."""
    learning_starts: int = 5_000
    """Environment steps of uniformly random actions before the first update."""
    batch_size: int = 256
    """Transitions per gradient update."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions."""
    updates_per_step: int = 1
    """Gradient updates after each call of env.step (which steps all num-envs environments)."""
    num_envs: int = 1
    """Environments stepped together."""
    vector_mode: Literal["sync", "async"] = "sync"
    """sync steps the num-envs environments in this process; async gives each a subprocess (for costly envs)."""
    normalize_obs: bool = False
    """Normalize observations by their running mean and variance (saved with the policy, applied on load)."""
    eval_every: int = 10_000
    """Environment steps between deterministic evaluations; 0 disables them."""
    eval_episodes: int = 10
    """Episodes per evaluation, including the final one; 0 skips the final evaluation."""
    video_every: int = 0
    """Environment steps between evaluation videos (RUN_DIR/videos, and wandb); 0 disables them."""
    checkpoint_every: int = 100_000
    """Environment steps between checkpoints; 0 writes only the final one."""
    save_buffer: bool = True
    """Store the replay buffer in checkpoints, for an exact resume (README: sizes)."""
    log_every: int = 1_000
    """Environment steps between metric logs and progress lines."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N; auto picks CUDA when present."""
    threads: int = 0
    """CPU threads for torch; 0 keeps torch's default."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 runs the networks' matmuls in bfloat16 (autocast); weights, losses and optimizers stay float32."""
    compile: bool = False
    """Compile the losses with torch.compile (tens of seconds to start); meant for GPUs, slower on CPUs measured."""
    run_dir: str | None = None
    """Folder of this run; none means runs/<env>__<agent>__s<seed>__<time>."""
    wandb: Literal["online", "offline", "disabled"] | None = None
    """online, offline or disabled; none means online when logged in to wandb, offline otherwise."""
    wandb_group: str | None = None
    """wandb group of the run; none means a name shared by the runs that differ only by seed."""

    @property
    def agent_config(self):
        return getattr(self, self.agent)

    def __post_init__(self):
        check(0 <= self.seed < 2**32, f"seed must lie in [0, 2**32), got {self.seed}.")
        for name in ("total_steps", "batch_size", "buffer_size", "updates_per_step", "num_envs", "log_every"):
            check(getattr(self, name) > 0, f"{name} must be a positive integer, got {getattr(self, name)}.")
        for name in ("learning_starts", "eval_every", "eval_episodes", "video_every", "checkpoint_every", "threads"):
            check(getattr(self, name) >= 0, f"{name} must be zero or positive, got {getattr(self, name)}.")
        check(self.batch_size <= self.buffer_size,
               f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size}).")
        check(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
               f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}.")


# Everything a training run needs, saved with the run as config.yaml: the run's fields and one section per agent.
Config = dataclasses.make_dataclass(
    "Config", [(name, agent.config_class, field(default_factory=agent.config_class)) for name, agent in AGENTS.items()],
    bases=(RunConfig,), frozen=True)


# ---- reflection over the tree -------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (its own fields and those it inherits)."""
    docs: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        try:
            body = ast.parse(inspect.getsource(klass)).body[0].body
        except (OSError, TypeError):  # made by make_dataclass (Config): no source, and no docstrings of its own
            continue
        for stmt, following in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                docs[stmt.target.id] = " ".join(following.value.value.split())
    return docs


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def leaf_fields(cls: type = Config, prefix: tuple[str, ...] = ()):
    """(path, type, default, doc) for every non-section field of the tree, depth first."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            yield from leaf_fields(tp, prefix + (f.name,))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            yield prefix + (f.name,), tp, default, docs.get(f.name, "")


# ---- values ----------------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return f"a list of {_describe(args[0])}s"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
            type(None): "none"}.get(tp, str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` (from YAML, or a string from the command line) as type `tp`; a UserError names `key` if it isn't."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    try:
        if origin in (typing.Union, types.UnionType):
            if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
                if type(None) in args:
                    return None
            inner = [a for a in args if a is not type(None)]
            try:
                return coerce(value, inner[0], key)
            except UserError:
                raise ValueError from None
        if origin is Literal:
            if value in args:
                return value
            raise ValueError
        if origin is tuple:
            if isinstance(value, str):
                value = value.split()
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(coerce(v, args[0], key) for v in value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else int(value)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, int):
                return value
            raise ValueError
        if tp is float:
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, str):
                return value
            raise ValueError
    except (ValueError, TypeError):
        pass
    raise UserError(f"{key} must be {_describe(tp)}, got {value!r}.")


# ---- dicts, YAML and layering -------------------------------------------------------------------------


def _suggest(key: str, candidates: list[str]) -> str:
    same_name = [c for c in candidates if c.split(".")[-1] == key.split(".")[-1]]  # e.g. sac.gamma, td3.gamma
    if same_name:
        return "; did you mean " + " or ".join(f"'{c}'" for c in same_name) + "?"
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys are: {', '.join(sorted(candidates))}."


def check_layer(data: dict, source: str, cls: type = Config, prefix: str = "") -> None:
    """Keys and value types of one layer (a YAML file, the flags), reported against `source`; the checks that
    relate fields to each other wait for the merged config, since another layer may set the other field."""
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in hints:
            all_paths = [".".join(p) for p, *_ in leaf_fields(Config)]
            raise UserError(f"unknown key '{dotted}' in {source}{_suggest(dotted, all_paths)}")
        if _is_section(hints[key]):
            if not isinstance(value, dict):
                raise UserError(f"'{dotted}' in {source} must be a section of keys, got {value!r}.")
            check_layer(value, source, hints[key], dotted + ".")
        else:
            coerce(value, hints[key], f"{dotted} in {source}")


def from_dict(data: dict, source: str, cls: type = Config, prefix: str = ""):
    """Build `cls` from a nested dict, naming `source` and the closest valid key when a key is unknown."""
    hints = typing.get_type_hints(cls)
    all_paths = [".".join(p) for p, *_ in leaf_fields(Config)]
    kwargs = {}
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in hints:
            raise UserError(f"unknown key '{dotted}' in {source}{_suggest(dotted, all_paths)}")
        if _is_section(hints[key]):
            if not isinstance(value, dict):
                raise UserError(f"'{dotted}' in {source} must be a section of keys, got {value!r}.")
            kwargs[key] = from_dict(value, source, hints[key], dotted + ".")
        else:
            kwargs[key] = coerce(value, hints[key], f"{dotted} in {source}")
    return cls(**kwargs)


def to_dict(config) -> dict:
    """The config as plain nested dicts, lists and scalars (for YAML, checkpoints and wandb)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{where}: {getattr(e, 'problem', e)}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}.")
    return data


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def preset_paths(env_id: str, agent: str) -> list[Path]:
    """The presets that exist for this env and agent: the env's own, then the agent's for that env."""
    return [p for p in (CONFIG_DIR / f"{env_id}.yaml", CONFIG_DIR / agent / f"{env_id}.yaml") if p.is_file()]


def resolve(overrides: dict, config_file: str | None = None) -> Config:
    """Defaults <- the presets <- `config_file` <- `overrides` (a nested dict, typically from flags)."""
    user = load_yaml(config_file) if config_file else {}
    env_id = overrides.get("env") or user.get("env") or Config.env
    agent = overrides.get("agent") or user.get("agent") or Config.agent
    layers = [(load_yaml(path), str(path)) for path in preset_paths(env_id, agent)]
    if config_file:
        layers.append((user, str(config_file)))
    layers.append((overrides, "the command line"))
    merged: dict = {}
    for data, source in layers:
        check_layer(data, source)
        merged = merge(merged, data)
    return from_dict(merged, "the merged configuration")


def save_yaml(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
