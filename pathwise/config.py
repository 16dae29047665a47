"""The run's configuration: the run's settings and one agent's section, its YAML form, and the layering of presets
and overrides.

Layers, each overriding the one before: the defaults (below, and the agent's section in the agent's own file),
the env family's preset (`configs/dm_control.yaml` for the dm_control/ tasks), the env's preset
`configs/<EnvId>.yaml`, the agent's preset for that env `configs/<agent>/<EnvId>.yaml`, a `--config FILE`, and the
flags. In YAML (and in a run's config.yaml) the agent is `agent: NAME` and its
hyperparameters are the section `NAME:`.
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

from pathwise.agents.registry import AGENTS, AgentConfig
from pathwise.agents.sac import SACConfig
from pathwise.errors import UserError

# The presets: pathwise/configs/ in an installed package, configs/ at the top of a checkout.
_HERE = Path(__file__).resolve().parent
CONFIG_DIR = _HERE / "configs" if (_HERE / "configs").is_dir() else _HERE.parent / "configs"
# Named presets: whole recipes that `--config NAME` applies on top of the env's and agent's presets.
NAMED_DIR = CONFIG_DIR / "named"
DEFAULT_AGENT = "sac"


def setting(default: Any, *, experiment: bool = True, resumable: bool = False) -> Any:
    """A field of the run. `experiment=False`: it does not change what the run learns, so runs that differ only
    in such fields (and the seed) share a wandb group. `resumable=True`: a resumed run may change it."""
    return field(default=default, metadata={"experiment": experiment, "resumable": resumable})


@dataclass(frozen=True)
class Config:
    """Everything a training run needs; saved with the run as config.yaml."""

    env: str = "Pendulum-v1"
    """Gymnasium environment id with a continuous (Box) action space."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for gymnasium.make, e.g. ctrl_cost_weight=0.05 (flags: key=value ...; YAML: a mapping)."""
    action_repeat: int = 1
    """Env steps each action is held for, their rewards summed (2 in the dm_control/ tasks' preset, as their papers
    run them). The step counts (total_steps, learning_starts, eval_every, ...) count env steps: the agent acts and
    stores a transition, and updates_per_step updates follow, once every action_repeat of them."""
    agent: AgentConfig = field(default_factory=SACConfig, metadata={"experiment": True, "resumable": False})
    """The agent: sac, td3, tqc or crossq; its hyperparameters are the flags of its section (its name, in YAML)."""
    seed: int = setting(1, experiment=False)
    """Seeds torch, numpy and the environments."""
    total_steps: int = setting(1_000_000, resumable=True)
    """Environment steps to train for."""
    learning_starts: int = 5_000
    """Environment steps of uniformly random actions before the first update."""
    batch_size: int = 256
    """Transitions per gradient update."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions."""
    updates_per_step: int = 1
    """Gradient updates after each call of env.step (which steps all num-envs environments)."""
    reset_every: int = 0
    """Environment steps between resets of the networks and their optimizers' moments (0: never); the replay
    buffer and the entropy temperature are kept."""
    reset_keep: float = 0.0
    """Share of each network parameter a reset keeps: 0 is a full reset, 0 < keep < 1 shrink and perturb
    (keep * old + (1 - keep) * fresh)."""
    policy_average: float = 0.0
    """0: the policy the run evaluates, saves and exports is the actor. Above 0: a running average of the actor's
    weights and normalization statistics, moved this share of the way to the actor after each action's updates
    (0.002: about the last 500 actions, env steps without --action-repeat); the actor itself still acts in
    training. An actor trained at high update ratios can fall in one evaluation and walk in the next; its average
    scored higher on three of four MuJoCo runs (docs/benchmarks.md)."""
    lr_final_fraction: float = 1.0
    """Every learning rate falls linearly, from its value at the first update to this fraction of it at
    lr_decay_steps (1: constant; 0.1: a tenth of it at the end)."""
    lr_decay_steps: int = 0
    """Env steps at which the learning rates reach lr_final_fraction and stay there; 0: total_steps. Set, a longer
    run has the rates of a run of this length up to it (its evaluations there are that run's)."""
    gamma_start: float = 0.0
    """0: the discount is the agent's gamma throughout. Above 0: the discount starts here at the first update and
    rises to the agent's gamma at gamma_rise_steps, its horizon 1 / (1 - discount) growing linearly, then held: a
    short horizon while a gait is found, a long one to keep it (docs/benchmarks.md)."""
    gamma_rise_steps: int = 0
    """Env steps at which the discount reaches the agent's gamma (with gamma_start); 0: total_steps."""
    num_envs: int = 1
    """Environments stepped together."""
    vector_mode: Literal["sync", "async", "envpool", "torch", "mjx", "mjlab"] = setting("sync", experiment=False)
    """sync steps the num-envs environments in this process; async gives each a subprocess (for costly envs);
    envpool steps them in EnvPool's C++ threads (its MuJoCo tasks); torch as tensors (the torch-native tasks); mjx
    as one jitted JAX function (MuJoCo Playground's tasks, playground/<Task>); mjlab as one mjlab env (MuJoCo Warp
    on the CPU; mjlab's tasks, mjlab/<Task>)."""
    stagger_episodes: bool = False
    """Start each env's first episode part-way through its time limit (the part uniform over the limit), so that
    the num-envs envs do not all reach their time limits at the same step (random initial episode lengths, as
    many-env recipes on GPU simulators use); the episodes after run the whole limit. Not with EnvPool, which
    cannot start an episode part-way."""
    on_nonfinite: Literal["stop", "drop"] = setting("stop", resumable=True)
    """A NaN or infinite observation or reward from a training env: stop (the run saved at the step before), or
    drop (the episode's transitions are never sampled, the env is reset, train/dropped_episodes counts them)."""
    normalize_obs: bool = False
    """Normalize observations by their running mean and variance (saved with the policy, applied on load)."""
    her: bool = False
    """Hindsight experience replay, for goal-conditioned envs (Dict observations with achieved_goal and
    desired_goal, and compute_reward): part of each batch gets a goal its episode achieved later."""
    her_relabels: int = 4
    """With --her, goals relabelled per transition kept as it was: a share relabels/(relabels+1) of each batch."""
    eval_every: int = setting(10_000, experiment=False)
    """Environment steps between deterministic evaluations; 0 disables them."""
    eval_episodes: int = setting(10, experiment=False)
    """Episodes per evaluation, including the final one; 0 skips the final evaluation."""
    video_every: int = setting(0, experiment=False)
    """Environment steps between evaluation videos (RUN_DIR/videos, and wandb); 0 disables them."""
    checkpoint_every: int = setting(100_000, experiment=False)
    """Environment steps between checkpoints; 0 writes only the final one."""
    save_buffer: bool = setting(True, experiment=False)
    """Store the replay buffer in checkpoints, for an exact resume (docs/guide.md: checkpoint sizes)."""
    log_every: int = setting(1_000, experiment=False, resumable=True)
    """Environment steps between metric logs and progress lines."""
    device: str = setting("auto", experiment=False, resumable=True)
    """auto, cpu, cuda or cuda:N; auto picks CUDA when present."""
    threads: int = setting(0, experiment=False, resumable=True)
    """CPU threads for torch; 0 uses the CPUs that other processes leave free, read again at each log (a fixed
    count also fixes the numbers: a run's floating-point sums can depend on how many threads share them)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 runs the networks' matmuls in bfloat16 (autocast; weights, losses and optimizers stay float32); auto
    picks bf16 on a CPU with native bf16 matmuls (AMX, AVX512-BF16), float32 elsewhere (docs/performance.md)."""
    compile: bool | None = setting(None, experiment=False, resumable=True)
    """Compile the losses with torch.compile, and on a CPU acting too; none (the default) compiles on a CPU where
    the run's updates repay the compile, for the agents measured faster so (docs/performance.md)."""
    cuda_graph: bool = setting(False, experiment=False, resumable=True)
    """On a GPU, replay each update and each action from a CUDA graph recorded at its first calls: one launch
    instead of hundreds (docs/benchmarks.md); with --compile, of the compiled losses."""
    run_dir: str | None = setting(None, experiment=False)
    """Folder of this run; none means runs/<env>__<agent>__s<seed>__<time>."""
    wandb: Literal["online", "offline", "disabled"] | None = setting(None, experiment=False, resumable=True)
    """online, offline or disabled; none means online when logged in to wandb, otherwise offline."""
    wandb_group: str | None = setting(None, experiment=False)
    """wandb group of the run; none means a name shared by the runs that differ only by seed."""
    tensorboard: bool = setting(True, experiment=False, resumable=True)
    """Also write the metrics as TensorBoard event files in RUN_DIR/tensorboard (tensorboard --logdir runs)."""

    @property
    def env_steps_per_call(self) -> int:
        """Env steps the trainer makes a call: an action of each of the num_envs envs, each held for action_repeat."""
        return self.num_envs * self.action_repeat

    def __post_init__(self):
        if not isinstance(self.agent, tuple(AGENTS.values())):
            raise ValueError(f"agent must be one of the agents' sections ({', '.join(AGENTS)}), got {self.agent!r}.")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must lie in [0, 2**32), got {self.seed}.")
        for name in ("total_steps", "batch_size", "buffer_size", "updates_per_step", "num_envs", "log_every",
                     "her_relabels", "action_repeat"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if not 0.0 < self.lr_final_fraction <= 1.0:
            raise ValueError(f"lr_final_fraction must lie in (0, 1], got {self.lr_final_fraction}.")
        if not 0.0 <= self.gamma_start < 1.0:
            raise ValueError(f"gamma_start must lie in [0, 1), got {self.gamma_start}.")
        if self.gamma_start and self.agent.gamma == 1.0:
            raise ValueError("gamma_start needs an agent gamma below 1: the horizon rises to 1 / (1 - gamma).")
        if not 0.0 <= self.policy_average <= 1.0:
            raise ValueError(f"policy_average must lie in [0, 1], got {self.policy_average}.")
        if not 0.0 <= self.reset_keep < 1.0:
            raise ValueError(f"reset_keep must lie in [0, 1), got {self.reset_keep}.")
        for name in ("learning_starts", "eval_every", "eval_episodes", "video_every", "checkpoint_every", "threads",
                     "reset_every", "lr_decay_steps", "gamma_rise_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be zero or positive, got {getattr(self, name)}.")
        if self.her and self.action_repeat > 1:
            raise ValueError("her recomputes a relabelled transition's reward from one env step, and with "
                             f"action_repeat {self.action_repeat} each stored reward sums {self.action_repeat} env "
                             "steps; use one or the other (--action-repeat 1: the dm_control/ tasks' preset holds "
                             "each action for 2).")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size}).")
        if re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is None:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}.")
        if "render_mode" in self.env_kwargs:
            raise ValueError("env_kwargs may not set render_mode: training renders nothing, and videos "
                             "(--video-every) set it themselves.")


def flag(name: str) -> str:
    """The command-line flag of a field: --total-steps for total_steps."""
    return "--" + name.replace("_", "-")


def run_fields(role: str) -> tuple[str, ...]:
    """The names of the run's fields whose metadata `role` ("experiment" or "resumable") is true."""
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get(role, role == "experiment"))


# ---- reflection ------------------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (its own fields and those it inherits)."""
    docs: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        body = ast.parse(inspect.getsource(klass)).body[0].body
        for stmt, following in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                docs[stmt.target.id] = " ".join(following.value.value.split())
    return docs


def agent_name_type() -> Any:
    return Literal[tuple(AGENTS)]


def section_fields(cls: type):
    """(name, type, default, doc) of each field of a dataclass."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        yield f.name, hints[f.name], default, docs.get(f.name, "")


def leaf_fields(config: Config):
    """(path, type, value, doc) for every setting of `config`: the run's fields, `agent` as the agent's name,
    and the agent's hyperparameters under its name (("sac", "gamma"))."""
    run = {f.name: getattr(config, f.name) for f in dataclasses.fields(Config) if f.name != "agent"}
    section = {f.name: getattr(config.agent, f.name) for f in dataclasses.fields(config.agent)}
    yield from settings(config.agent.name, run, section)


def settings(name: str, run: dict, section: dict):
    """(path, type, value, doc) for every setting of a run of the agent `name`, the values taken from `run`
    and `section` where they hold them, else the defaults."""
    for field_name, tp, value, doc in section_fields(Config):
        if field_name == "agent":
            yield ("agent",), agent_name_type(), name, doc
        else:
            yield (field_name,), tp, run.get(field_name, value), doc
    for field_name, tp, value, doc in section_fields(AGENTS[name]):
        yield (name, field_name), tp, section.get(field_name, value), doc


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
        if origin is dict:
            return _keyword_arguments(value, key)
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


def _keyword_arguments(value: Any, key: str) -> dict:
    """A mapping of names to values, from YAML's mapping or from flags' `name=value` words (each value read as
    YAML: 0.05 is a number, true a boolean, [1, 2] a list)."""
    if isinstance(value, str):
        value = value.split()
    if isinstance(value, (list, tuple)):
        pairs = {}
        for word in value:
            name, sep, text = str(word).partition("=")
            if not sep or not name.isidentifier():
                raise UserError(f"{key} takes name=value words, e.g. ctrl_cost_weight=0.05, got {word!r}.")
            try:
                pairs[name] = yaml.safe_load(text) if text else ""
            except yaml.YAMLError:
                raise UserError(f"{key}: the value of {name} is not readable, got {text!r}.") from None
        value = pairs
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise UserError(f"{key} must map argument names to values, got {value!r}.")
    return dict(value)


# ---- dicts, YAML and layering -------------------------------------------------------------------------


def _suggest(key: str, candidates: list[str]) -> str:
    same_name = [c for c in candidates if c.split(".")[-1] == key.split(".")[-1]]  # e.g. sac.gamma
    if same_name:
        return "; did you mean " + " or ".join(f"'{c}'" for c in same_name) + "?"
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys are: {', '.join(sorted(candidates))}."


def agent_name(data: dict, source: str) -> str:
    name = data.get("agent", DEFAULT_AGENT)
    if not isinstance(name, str) or name not in AGENTS:
        raise UserError(f"unknown agent {name!r} in {source}; the agents are {', '.join(AGENTS)}.")
    return name


def _values(data: dict, cls: type, source: str, prefix: str = "") -> dict:
    """The keys of `data` checked against the fields of `cls` and coerced to their types."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        if key not in hints or key == "agent":
            raise KeyError(key)
        out[key] = coerce(value, hints[key], f"{prefix}{key} in {source}")
    return out


def _split(data: dict, name: str, source: str) -> tuple[dict, dict]:
    """(run keys, the agent's section) of one layer, for the agent `name`; one sentence on a misplaced key."""
    run, section = {}, {}
    for key, value in data.items():
        if key == name:
            if not isinstance(value, dict):
                raise UserError(f"'{key}' in {source} must be a section of keys, got {value!r}.")
            section = value
        elif key in AGENTS:
            raise UserError(f"'{key}' in {source} is the section of agent {key}, but the agent is {name}: set "
                            f"agent: {key} (or --agent {key}) to train {key}, or put the values under '{name}:'.")
        elif key != "agent":
            run[key] = value
    return run, section


def check_layer(data: dict, source: str, name: str) -> tuple[dict, dict]:
    """Keys and value types of one layer (a YAML file, the flags) for the agent `name`, reported against
    `source`: (the run's values, the section's values). The checks that relate fields to each other wait for
    the merged config, since another layer may set the other field."""
    run, section = _split(data, name, source)
    try:
        run_values = _values(run, Config, source)
    except KeyError as e:
        paths = [".".join(p) for p, *_ in leaf_fields(Config(agent=AGENTS[name]()))]
        key = str(e.args[0])
        raise UserError(f"unknown key '{key}' in {source}{_suggest(key, paths)}") from None
    try:
        section_values = _values(section, AGENTS[name], source, f"{name}.")
    except KeyError as e:
        key = f"{name}.{e.args[0]}"
        others = [f"{other}.{f.name}" for other, cls in AGENTS.items() for f in dataclasses.fields(cls)
                  if f.name == e.args[0] and other != name]
        if others:
            raise UserError(f"unknown key '{key}' in {source}: {e.args[0]} is a hyperparameter of "
                            f"{', '.join(o.split('.')[0] for o in others)}, not of {name}.") from None
        paths = [f"{name}.{f.name}" for f in dataclasses.fields(AGENTS[name])]
        raise UserError(f"unknown key '{key}' in {source}{_suggest(key, paths)}") from None
    return run_values, section_values


def from_dict(data: dict, source: str) -> Config:
    """The config of a nested dict (YAML's form): one sentence naming `source` on anything wrong."""
    name = agent_name(data, source)
    run, section = check_layer(data, source, name)
    try:
        return Config(**run, agent=AGENTS[name](**section))
    except ValueError as e:
        raise UserError(str(e)) from None


def to_dict(config: Config) -> dict:
    """The config as plain nested dicts, lists and scalars (for YAML, checkpoints and wandb): `agent` is the
    agent's name and its hyperparameters follow as the section of that name."""
    def plain(value):
        return list(value) if isinstance(value, tuple) else value

    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = value.name if f.name == "agent" else plain(value)
    out[config.agent.name] = {f.name: plain(getattr(config.agent, f.name)) for f in dataclasses.fields(config.agent)}
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


def env_presets(env_id: str) -> list[Path]:
    """The presets that exist for this env, for every agent: its family's (configs/dm_control.yaml for the
    dm_control/ tasks), then its own."""
    family = [CONFIG_DIR / f"{env_id.split('/')[0]}.yaml"] if "/" in env_id else []
    return [p for p in (*family, CONFIG_DIR / f"{env_id}.yaml") if p.is_file()]


def preset_paths(env_id: str, agent: str) -> list[Path]:
    """The presets that exist for this env and agent: the env's (env_presets), then the agent's for that env."""
    agent_preset = CONFIG_DIR / agent / f"{env_id}.yaml"
    return [*env_presets(env_id), *([agent_preset] if agent_preset.is_file() else [])]


def named_presets() -> list[str]:
    return sorted(path.stem for path in NAMED_DIR.glob("*.yaml"))


def config_path(value: str) -> Path:
    """`--config`'s value: a YAML file, or the name of a named preset (configs/named/NAME.yaml)."""
    path, named = Path(value), NAMED_DIR / f"{value}.yaml"
    if path.is_file() or path.suffix in (".yaml", ".yml") or "/" in value:
        return path  # load_yaml says if it is missing
    if named.is_file():
        return named
    raise UserError(f"--config {value}: no such file, and no named preset of that name (the named presets: "
                    f"{', '.join(named_presets())}).")


def layered(overrides: dict, config_file: str | None = None) -> tuple[str, dict]:
    """The agent's name, and the presets <- `config_file` (a YAML file or a named preset) <- `overrides` (a nested
    dict, typically from flags) merged into one dict, each layer checked on its own."""
    if config_file:
        config_file = str(config_path(config_file))
    user = load_yaml(config_file) if config_file else {}
    env_id = overrides.get("env") or user.get("env") or Config.env
    # The agent: the flag's, the config file's, the env presets' (the agent their settings were measured with; the
    # env's own over its family's), or SAC.
    named = [(data["agent"], str(path)) for path in env_presets(env_id) if (data := load_yaml(path)).get("agent")]
    preset_agent, preset_source = named[-1] if named else (None, "")
    name = overrides.get("agent") or user.get("agent") or preset_agent or DEFAULT_AGENT
    source = ("the command line" if overrides.get("agent") else str(config_file) if user.get("agent")
              else preset_source)
    name = agent_name({"agent": name}, source)
    layers = [(load_yaml(path), str(path)) for path in preset_paths(env_id, name)]
    if config_file:
        layers.append((user, str(config_file)))
    layers.append((overrides, "the command line"))
    merged: dict = {}
    for data, source in layers:
        check_layer(data, source, name)
        merged = merge(merged, data)
    return name, {**merged, "agent": name}


def resolve(overrides: dict, config_file: str | None = None) -> Config:
    """Defaults <- the presets <- `config_file` <- `overrides` (a nested dict, typically from flags)."""
    return from_dict(layered(overrides, config_file)[1], "the merged configuration")


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_yaml(config: Config, path: Path, resolved: dict | None = None) -> None:
    """The config as YAML; `resolved`, what its `auto` settings came to on this machine, as comments after it."""
    text = to_yaml(config)
    if resolved:
        lines = yaml.safe_dump(resolved, sort_keys=False).splitlines()
        text += "# Resolved on the machine of the run's latest session (a resumed run resolves again):\n"
        text += "".join(f"#   {line}\n" for line in lines)
    path.write_text(text)
