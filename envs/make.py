"""Gymnasium env construction: id and space checks, the [-1, 1] action rescaling, the pinned autoreset mode."""

import contextlib
import difflib
import functools
import importlib
import io
import math
import signal
import sys
import warnings

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.wrappers import FlattenObservation, RescaleAction

from pathwise.errors import EnvFault, NonFinite, UserError

# DISABLED: step() always returns the true next observation, and the trainer resets ended sub-envs itself
# (reset with a reset_mask), each episode from a seed it draws. No stored transition can span a reset, and an
# episode in flight can be rebuilt exactly from its seed and its actions when a run resumes.
AUTORESET_MODE = AutoresetMode.DISABLED


# Env families that register themselves on import: the id's prefix, the module, and the extra that installs it.
PLUGINS = (*((prefix, "gymnasium_robotics", "robotics") for prefix in
              ("Fetch", "HandManipulate", "HandReach", "PointMaze_", "AntMaze_", "AdroitHand", "FrankaKitchen")),
           ("dm_control/", "shimmy", "dmc"),
           ("pathwise/", "pathwise.envs.torch_envs", None),
           ("playground/", "pathwise.envs.playground", "playground"), ("mjlab/", "pathwise.envs.mjlab", "mjlab"))


def _register_plugin(env_id: str) -> None:
    """Import the package that registers `env_id`'s family, or say in one sentence how to install it."""
    for prefix, module, extra in PLUGINS:
        if env_id.startswith(prefix):
            import_optional(extra, f"environment '{env_id}' comes with {module}", module)
            return


def import_optional(extra: str, needs: str, *modules: str) -> list:
    """Modules an extra installs, imported with what they print on import kept quiet (gymnasium-robotics prints a
    notice about its Adroit tasks, whatever the task); if one is missing, one sentence: `needs`, "which is not
    installed", and the extra that installs it."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [importlib.import_module(module) for module in modules]
    except ImportError as e:
        raise UserError(f"{needs}, which is not installed ({e}); pip install \"pathwise-rl[{extra}]\" (or -e "
                        f"\".[{extra}]\" in a checkout).") from None


def _gym_make(env_id: str, env_kwargs: dict, **kwargs) -> gym.Env:
    if ":" not in env_id and env_id not in gym.registry:
        _register_plugin(env_id)
    if ":" not in env_id and env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.pprint_registry() for the ids."
        raise UserError(f"unknown environment '{env_id}'{hint}")
    if ":" not in env_id and "mujoco" in str(gym.spec(env_id).entry_point):
        _quiet_model_notices()
    try:
        return gym.make(env_id, **env_kwargs, **kwargs)
    except TypeError as e:
        if not env_kwargs:
            raise
        reason = str(e).split(" was raised from")[0]  # gymnasium appends the env id and kwargs again
        raise UserError(f"environment '{env_id}' does not take env_kwargs {env_kwargs}: {reason}.") from None
    except gym.error.DependencyNotInstalled as e:
        raise UserError(f"environment '{env_id}' needs a package that is not installed: {e}") from None
    except (gym.error.Error, ImportError, ModuleNotFoundError) as e:
        raise UserError(f"cannot make environment '{env_id}': {e}") from None


@functools.cache
def _quiet_model_notices() -> None:
    """MuJoCo 4 warns at every load of Gymnasium's MuJoCo models that they use a deprecated attribute
    ('settotalmass'), twice a run, which nobody running them can act on; its other warnings still reach stderr."""
    import mujoco

    def warn(message: str) -> None:
        if "'settotalmass' is deprecated" not in message:
            print(f"MuJoCo warning: {message}", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(warn)


def _check_spaces(env_id: str, env: gym.Env) -> None:
    act = env.action_space
    if not isinstance(act, gym.spaces.Box):
        raise UserError(f"environment '{env_id}' has a {type(act).__name__} action space; pathwise agents need "
                        "a continuous Box action space (for example Pendulum-v1 or HalfCheetah-v5).")
    if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        raise UserError(f"environment '{env_id}' has an unbounded action space; the agent acts in [-1, 1] and "
                        "needs finite bounds to rescale its actions to.")
    obs = env.observation_space
    parts = obs.spaces.values() if isinstance(obs, gym.spaces.Dict) else (obs,)
    if not all(isinstance(part, gym.spaces.Box) for part in parts):
        raise UserError(f"environment '{env_id}' has the observation space {obs}; pathwise agents read a Box, or a "
                        "Dict of Boxes (flattened in its key order).")


class Checked(gym.Wrapper):
    """What the env does wrong becomes an EnvFault: an exception from its step or reset (a simulator crash, a bug in
    a custom env), or a NaN or infinite observation or reward (a physics blow-up), caught before anything stores it.
    With `nonfinite="drop"` a step's non-finite observation or reward is set to zero instead, and the step's info
    says what it was (`nonfinite`), for the one who steps it to drop the episode."""

    def __init__(self, env: gym.Env, env_id: str, nonfinite: str = "stop"):
        super().__init__(env)
        self.env_id, self.drop = env_id, nonfinite == "drop"

    def step(self, action):
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        except Exception as e:
            raise self._fault("step", e) from e
        bad_obs, bad_reward = not all_finite(obs), not math.isfinite(reward)
        if not (bad_obs or bad_reward):
            return obs, reward, terminated, truncated, info
        what = f"observation ({_first_bad(obs)})" if bad_obs else f"reward ({reward})"
        obs, reward = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0), 0.0 if bad_reward else reward
        if not self.drop:
            raise NonFinite(f"environment '{self.env_id}' returned a non-finite {what}")
        return obs, reward, terminated, truncated, {**info, "nonfinite": what}

    def reset(self, **kwargs):
        try:
            obs, info = self.env.reset(**kwargs)
        except Exception as e:
            raise self._fault("reset", e) from e
        if not np.isfinite(obs).all():
            raise NonFinite(f"environment '{self.env_id}' returned a non-finite observation ({_first_bad(obs)}) "
                            "at a reset")
        return obs, info

    def _fault(self, what: str, e: Exception) -> EnvFault:
        first = str(e).splitlines()[0] if str(e) else "no message"
        return EnvFault(f"environment '{self.env_id}' raised {type(e).__name__} in {what}: {first}")


class Repeat(gym.Wrapper):
    """Each action held for `times` env steps, their rewards summed, the last step's observation and info
    returned; an episode that ends (or a step that was not finite, under `nonfinite="drop"`) cuts it short.
    DeepMind Control papers hold each action for 2 steps (their "action repeat")."""

    def __init__(self, env: gym.Env, times: int):
        super().__init__(env)
        self.times = times
        if env.metadata.get("render_fps"):  # a video has one frame an action
            self.metadata = {**env.metadata, "render_fps": env.metadata["render_fps"] / times}

    def step(self, action):
        total = 0.0
        for _ in range(self.times):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            if terminated or truncated or "nonfinite" in info:
                break
        return obs, total, terminated, truncated, info


def all_finite(x: np.ndarray) -> bool:
    """Whether every entry of `x` is finite: the sum first (a fraction of a microsecond), which is finite exactly
    when every entry is, short of overflow."""
    return math.isfinite(x.sum()) or bool(np.isfinite(x).all())


def _first_bad(obs) -> str:
    flat = np.asarray(obs, dtype=np.float64).ravel()
    i = int(np.flatnonzero(~np.isfinite(flat))[0])
    return f"{flat[i]} at index {i}"


def make_env(env_id: str, render_mode: str | None = None, rescale_actions: bool = True,
             env_kwargs: dict | None = None, nonfinite: str = "stop", action_repeat: int = 1) -> gym.Env:
    """One environment, `gymnasium.make(env_id, **env_kwargs)`, with flat observations whose action space is
    Box(-1, 1), or its own bounds with `rescale_actions=False` (for policies that already act in them). Its faults
    are `Checked` (`nonfinite`: what a NaN or infinite observation or reward does, "stop" or "drop"); each action
    is held for `action_repeat` of its steps."""
    env = _gym_make(env_id, env_kwargs or {}, **({"render_mode": render_mode} if render_mode else {}))
    _check_spaces(env_id, env)
    if isinstance(env.observation_space, gym.spaces.Dict) or len(env.observation_space.shape) != 1:
        env = FlattenObservation(env)  # a Dict's keys end to end, in the order obs_keys() gives
    env = Checked(env, env_id, nonfinite)
    if action_repeat > 1:
        env = Repeat(env, action_repeat)
    if not rescale_actions:
        return env
    shape, dtype = env.action_space.shape, env.action_space.dtype  # DMC's actions are float64
    return RescaleAction(env, np.full(shape, -1.0, dtype), np.full(shape, 1.0, dtype))


def make_vector_env(env_id: str, num_envs: int, mode: str = "sync", env_kwargs: dict | None = None,
                    nonfinite: str = "stop", action_repeat: int = 1) -> VectorEnv:
    """`num_envs` copies of the env, stepped together: in this process (sync) or one subprocess each (async)."""
    if mode == "async":
        if env_id.startswith("playground/"):  # their evaluation env has started JAX, which a fork deadlocks
            raise UserError(f"--vector-mode async cannot run '{env_id}' (JAX's threads do not survive the fork of "
                            "its workers); use --vector-mode mjx, which steps all the envs in one jitted call.")
        # A worker's env fault comes back to this process as the EnvFault it was, which says it in one sentence;
        # gymnasium would print the worker's traceback before it.
        warnings.filterwarnings("ignore", message=r".*ERROR: (Received the following error|Traceback|Raising the "
                                "last exception)", category=UserWarning, module="gymnasium.vector.async_vector_env")
        worker = functools.partial(_worker_env, env_id, env_kwargs, nonfinite, action_repeat)
        return AsyncVectorEnv([worker] * num_envs, autoreset_mode=AUTORESET_MODE)
    return SyncVectorEnv([lambda: make_env(env_id, env_kwargs=env_kwargs, nonfinite=nonfinite,
                                           action_repeat=action_repeat)] * num_envs,
                         autoreset_mode=AUTORESET_MODE)


def _worker_env(env_id: str, env_kwargs: dict | None, nonfinite: str, action_repeat: int) -> gym.Env:
    """The env of an async worker process, which leaves the stop signals to the trainer: a SIGTERM or SIGHUP
    sent to the whole job (Slurm, a process group) would otherwise kill the worker in the middle of a step,
    before the trainer saves. Gymnasium's workers already ignore SIGINT. A worker still ends when the trainer
    closes it, or dies: its pipe closes."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return make_env(env_id, env_kwargs=env_kwargs, nonfinite=nonfinite, action_repeat=action_repeat)


# Where an env's info says whether its episode succeeded: Gymnasium-Robotics' Fetch and Hand tasks (and SB3's
# convention) say is_success, its mazes and Meta-World say success.
SUCCESS_KEYS = ("is_success", "success")


def success_key(info: dict) -> str | None:
    """The key of `info` that says whether the episode succeeded, or None where it says nothing of success."""
    return next((key for key in SUCCESS_KEYS if key in info), None)


def obs_keys(env: gym.Env) -> list[tuple[str, int]] | None:
    """For an env with Dict observations, each key and its size, in the order a made env's flat observation
    holds them (the Dict space's own order); None for a Box."""
    space = env.unwrapped.observation_space
    if not isinstance(space, gym.spaces.Dict):
        return None
    return [(key, int(gym.spaces.flatdim(part))) for key, part in space.spaces.items()]


def obs_columns(keys: list[tuple[str, int]]) -> dict[str, slice]:
    """Where each key lies in the flat observation."""
    starts = np.cumsum([0] + [size for _, size in keys])
    return {key: slice(int(a), int(b)) for (key, _), a, b in zip(keys, starts, starts[1:])}


def space_signature(env: gym.Env) -> dict:
    """A made env's spaces as plain data: what a checkpoint records to recognise a compatible env later (with Dict
    observations, their keys and sizes in the flat order)."""
    original = env.unwrapped.action_space
    signature = {"obs_dim": int(env.observation_space.shape[0]),
                 "action_low": original.low.astype(float).tolist(),
                 "action_high": original.high.astype(float).tolist()}
    keys = obs_keys(env)
    if keys is not None:
        signature["obs_keys"] = [[key, size] for key, size in keys]
    return signature
