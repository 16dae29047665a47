"""MuJoCo Playground's tasks (MJX: MuJoCo written in JAX) behind the batched-env protocol, as `playground/<Task>`
(`playground/CheetahRun`, `playground/CartpoleSwingup`, ...): `--vector-mode mjx` steps N of them as one jitted JAX
function, and one of them is a Gymnasium env for evaluation (and for the sync and async vector modes).

JAX hands its arrays to torch through DLPack, without a copy. The engine runs MJX's JAX implementation on the CPU
(`impl: jax`; Playground's default, warp, builds its kernels for minutes on a CPU); a GPU path is for when one has
run it. The same-step autoreset, the time limit and the action repeat are here, not in Playground's training
wrappers (brax's), which drop the last observation of an ended episode: an env whose episode ended is reset inside
the jitted step (only when one has), `final_obs` keeping the observation it ended on. The whole JAX state (the
physics, the step counts, the random key) is saved with a run's checkpoints, so a resumed run goes on exactly.
"""

import logging

import gymnasium as gym
import numpy as np
import torch

from pathwise.envs.batched import BatchedStep, Engine, OneEnv
from pathwise.envs.make import import_optional
from pathwise.errors import UserError

PREFIX = "playground/"


def _import_playground():
    jax, playground = import_optional("playground", "the playground/ tasks need MuJoCo Playground", "jax",
                                    "mujoco_playground")
    logging.getLogger("absl").setLevel(logging.ERROR)
    return jax, playground.registry


def load(env_id: str, env_kwargs: dict | None = None):
    """Playground's env for `env_id` ("playground/<Task>") with its default config, MJX's JAX implementation, and
    `env_kwargs` set in that config (episode_length, action_repeat, or a task's own fields); (env, config)."""
    _, registry = _import_playground()
    name = env_id.removeprefix(PREFIX)
    if name not in registry.ALL_ENVS:
        suite = ", ".join(sorted(registry.dm_control_suite.ALL_ENVS)[:6])
        raise UserError(f"MuJoCo Playground has no task '{name}' ({env_id}); its DeepMind Control tasks include "
                        f"{suite}, ... (mujoco_playground.registry.ALL_ENVS lists them all).")
    config = registry.get_default_config(name)
    unknown = sorted(set(env_kwargs or {}) - set(config.keys()))
    if unknown:
        raise UserError(f"{env_id}'s config has no {', '.join(unknown)}; it has {', '.join(sorted(config.keys()))}.")
    try:  # MJX's JAX implementation, where the task has a choice
        config.update({**({"impl": "jax"} if "impl" in config else {}), **(env_kwargs or {})})
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"cannot set {env_kwargs} in {env_id}'s config: {e}") from None
    try:
        env = registry.load(name, config=config)
    except Exception as e:  # a task whose assets are not on this machine, an MJX feature the task needs
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"MuJoCo Playground cannot load '{name}': {first}") from None
    if not isinstance(env.observation_size, int):
        raise UserError(f"{env_id} observes {env.observation_size}; the playground/ tasks pathwise runs observe "
                        "one flat array (the DeepMind Control tasks do).")
    return env, config


class Playground(Engine):
    """N envs of a Playground task stepped as one jitted function on the CPU, behind the protocol. Actions in
    [-1, 1] go to the task as they are (Playground's tasks take [-1, 1]); each is held for the config's
    `action_repeat` control steps (Playground's env steps), their rewards summed, the env left as it ended if the
    task was done at one of them. An episode is truncated after `episode_length` control steps (the config's: 1,000
    for the DeepMind Control tasks; with a repeat, rounded up to whole actions), terminated where the task says it
    is done; as Gymnasium's TimeLimit, an episode that ends at the limit by termination is both. Initial states
    come from a JAX key seeded when the envs are made and split at every step."""

    engine = "MJX"

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None):
        jax, _ = _import_playground()
        self.jax, self.cpu = jax, jax.devices("cpu")[0]
        self.env_id, self.num_envs, self.device = env_id, num_envs, torch.device("cpu")
        env, _ = _loaded(env_id, env_kwargs or {})
        self.obs_dim, self.act_dim = int(env.observation_size), int(env.action_size)
        self._reset, self._step, self.time_limit = _jitted(env_id, env_kwargs or {}, num_envs)
        self.seed(seed)
        self.state = self.elapsed = None

    def seed(self, seed: int) -> None:
        with self.jax.default_device(self.cpu):
            self.key = self.jax.random.PRNGKey(seed)

    def reset(self) -> torch.Tensor:
        with self.jax.default_device(self.cpu):
            self.state, self.elapsed, self.key = self._call("reset", self._reset, self.key)
        return self._checked(_host(self.state.obs), "at a reset")

    def step(self, action: torch.Tensor) -> BatchedStep:
        with self.jax.default_device(self.cpu):
            action = self.jax.dlpack.from_dlpack(action.detach().float().contiguous())
            self.state, self.elapsed, self.key, final_obs, reward, terminated, truncated = self._call(
                "step", self._step, self.state, self.elapsed, self.key, action)
        final_obs, reward = self._checked(_host(final_obs), ""), self._checked_reward(_host(reward))
        terminated, truncated = torch.from_dlpack(terminated), torch.from_dlpack(truncated)
        ended = terminated | truncated
        next_obs = self._checked(_host(self.state.obs), "at a reset") if ended.any() else final_obs
        return BatchedStep(next_obs, reward, terminated, truncated, final_obs)

    def start_elapsed(self, steps: np.ndarray) -> None:
        """Count each env's current episode as `steps` (N,) steps old: it is truncated that much sooner."""
        with self.jax.default_device(self.cpu):
            self.elapsed = self.jax.numpy.asarray(steps, dtype=self.jax.numpy.int32)

    def state_dict(self) -> dict:
        leaves = self.jax.tree.leaves((self.state, self.elapsed, self.key))
        return {"leaves": [torch.from_numpy(np.array(leaf)) for leaf in leaves]}

    def load_state_dict(self, state: dict) -> None:
        if self.state is None:
            self.reset()  # the tree's structure to fill
        now, tree = self.jax.tree.flatten((self.state, self.elapsed, self.key))
        saved = state["leaves"]
        if len(saved) != len(now) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(saved, now)):
            raise UserError(f"the checkpoint's {self.env_id} envs are not these {self.num_envs}: a resume keeps the "
                            "task, its env_kwargs and --num-envs.")
        with self.jax.default_device(self.cpu):  # (a leaf JAX had weakly typed is not now: one more compile)
            leaves = [self.jax.numpy.asarray(a.numpy(), dtype=b.dtype) for a, b in zip(saved, now)]
        self.state, self.elapsed, self.key = self.jax.tree.unflatten(tree, leaves)

    def close(self) -> None:
        pass


def _host(array) -> np.ndarray:
    """A JAX array on the CPU as NumPy, copied (through torch's view of it): what the run holds and may change
    is its own, never the envs' state."""
    return torch.from_dlpack(array).numpy().copy()


_MADE: dict = {}  # what a process has loaded and jitted, by task, config and batch size


def _loaded(env_id: str, env_kwargs: dict):
    key = (env_id, repr(sorted(env_kwargs.items())))
    if key not in _MADE:
        _MADE[key] = load(env_id, env_kwargs)
    return _MADE[key]


def _jitted(env_id: str, env_kwargs: dict, num_envs: int):
    """The batch's reset(key) -> (state, elapsed, key) and step(state, elapsed, key, action) -> (state, elapsed,
    key, final_obs, reward, terminated, truncated), jitted, and the time limit in agent steps; one pair for each
    task, config and batch size in a process (the evaluation env and the sync mode's envs share theirs)."""
    key = (env_id, repr(sorted(env_kwargs.items())), num_envs)
    if key not in _MADE:
        _MADE[key] = _compiled(*_loaded(env_id, env_kwargs), num_envs)
    return _MADE[key]


def _compiled(env, config, num_envs: int):
    import jax
    import jax.numpy as jnp

    repeat = int(config.action_repeat)
    limit = -(-int(config.episode_length) // repeat)  # agent steps, rounded up

    def reset(key):
        key, sub = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(sub, num_envs))
        return state, jnp.zeros(num_envs, jnp.int32), key

    def step(state, elapsed, key, action):
        def physics(carry, _):  # an env that is done stays as it ended, and earns nothing more
            state, reward, done = carry
            stepped = jax.vmap(env.step)(state, action)
            state = jax.tree.map(lambda old, new: jnp.where(_rows(done, new), old, new), state, stepped)
            return (state, reward + jnp.where(done, 0.0, stepped.reward), done | (stepped.done > 0)), None

        zeros = jnp.zeros(num_envs)
        (stepped, reward, terminated), _ = jax.lax.scan(physics, (state, zeros, zeros > 0), None, length=repeat)
        elapsed = elapsed + 1
        truncated = elapsed >= limit
        ended = terminated | truncated
        key, sub = jax.random.split(key)

        def reset_ended(_):
            fresh = jax.vmap(env.reset)(jax.random.split(sub, num_envs))
            return jax.tree.map(lambda f, s: jnp.where(_rows(ended, s), f, s), fresh, stepped)

        state = jax.lax.cond(ended.any(), reset_ended, lambda _: stepped, None)
        return (state, jnp.where(ended, 0, elapsed), key, stepped.obs, reward.astype(jnp.float32), terminated,
                truncated)

    return jax.jit(reset), jax.jit(step), limit


def _rows(mask, leaf):
    """A (N,) mask shaped to pick whole rows of a (N, ...) leaf."""
    return mask.reshape((-1,) + (1,) * (leaf.ndim - 1))


class PlaygroundEnv(OneEnv):
    """One env of a Playground task as a Gymnasium env (`--vector-mode mjx`'s evaluation env): its time limit and
    action repeat from the task's config; `reset(seed=s)` seeds its JAX key."""

    def __init__(self, task: str, **env_kwargs):
        super().__init__(Playground(PREFIX + task, 1, 0, env_kwargs))


def _register() -> None:
    _, registry = _import_playground()
    for name in registry.ALL_ENVS:
        if PREFIX + name not in gym.registry:
            gym.register(PREFIX + name, entry_point=PlaygroundEnv, kwargs={"task": name})


_register()
