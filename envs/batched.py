"""The batched-env protocol: many envs stepped as one, observations and actions as torch tensors on the envs'
device, and the engines behind it (--vector-mode): torch-native tasks (envs/torch_envs.py), EnvPool, MuJoCo
Playground's MJX tasks (envs/playground.py) and mjlab's (envs/mjlab.py)."""

from typing import NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch

from pathwise.envs.make import all_finite, import_optional
from pathwise.errors import EnvFault, NonFinite, UserError


class BatchedStep(NamedTuple):
    """What one step of N envs gives back, each with leading dimension N. An env whose episode ended (terminated
    or truncated) is reset in the same step: next_obs is its new episode's first observation, final_obs the true
    last one of the episode that ended (elsewhere final_obs is next_obs). Terminated and truncated stay apart:
    only termination stops bootstrapping."""
    next_obs: torch.Tensor  # (N, O) float32
    reward: torch.Tensor  # (N,) float32
    terminated: torch.Tensor  # (N,) bool
    truncated: torch.Tensor  # (N,) bool
    final_obs: torch.Tensor  # (N, O) float32


class BatchedEnv(Protocol):
    """N envs on `device`, acting in [-1, 1], seeded when made (EnvPool) or from torch's generator (the
    torch-native tasks). An engine that can put its envs back exactly also has `state_dict()` and
    `load_state_dict(state)`; one that cannot starts their episodes anew at a resume. An engine whose episodes
    can start part-way through their time limit (--stagger-episodes) has `time_limit` (env steps) and
    `start_elapsed(steps)`, which counts each env's current episode as that many (N,) steps old."""
    num_envs: int
    obs_dim: int
    act_dim: int
    device: torch.device

    def reset(self) -> torch.Tensor:  # (N, O)
        ...

    def step(self, action: torch.Tensor) -> BatchedStep:  # action (N, A)
        ...

    def close(self) -> None:
        ...


class Engine:
    """What an engine from another library shares: what it does wrong becomes one sentence, an exception it raises
    an EnvFault, a NaN or infinite number it returns NonFinite, caught before anything stores it."""
    env_id: str
    engine: str  # its name in those sentences

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else "no message"
            raise EnvFault(f"environment '{self.env_id}' ({self.engine}) raised {type(e).__name__} in {what}: "
                           f"{first}") from e

    def _checked(self, obs: np.ndarray, where: str) -> torch.Tensor:
        """float32 observations as a tensor (the same memory where they are float32 already)."""
        if not all_finite(obs):
            bad = obs[~np.isfinite(obs)][0]
            raise NonFinite(f"environment '{self.env_id}' returned a non-finite observation ({bad}){where and ' '}"
                            f"{where}")
        return torch.from_numpy(obs.astype(np.float32, copy=False))

    def _checked_reward(self, reward: np.ndarray) -> torch.Tensor:
        if not all_finite(reward):
            raise NonFinite(f"environment '{self.env_id}' returned a non-finite reward "
                            f"({reward[~np.isfinite(reward)][0]})")
        return torch.from_numpy(reward.astype(np.float32, copy=False))


class OneEnv(gym.Env):
    """One env of a batched engine as a Gymnasium env: the evaluation env of a run whose training envs are that
    engine's, and what the sync vector mode steps (slowly: one engine call per env step). Its episodes end as the
    batch's do; `reset(seed=s)` reseeds the engine (`batch.seed(s)`)."""

    metadata = {"render_modes": []}

    def __init__(self, batch: Engine):
        self.batch = batch
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (batch.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (batch.act_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.batch.seed(seed)
        return self.batch.reset()[0].numpy(), {}  # the engine's copies: each step makes new ones

    def step(self, action):
        out = self.batch.step(torch.as_tensor(np.asarray(action), dtype=torch.float32).reshape(1, -1))
        return (out.final_obs[0].numpy(), float(out.reward[0]), bool(out.terminated[0]),
                bool(out.truncated[0]), {})

    def close(self) -> None:
        self.batch.close()


class EnvPool(Engine):
    """EnvPool's C++ thread pool (its Gymnasium API, synchronous) behind the protocol. EnvPool resets an ended env
    at that env's next step, and returns the reset as a step of its own (reward 0, the action ignored); here the
    ended envs are stepped once more at once, so the reset lands in the same step and no transition spans it.
    EnvPool draws each env's resets from seeds fixed when the pool is made: its episodes cannot be put back."""

    engine = "EnvPool"

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None, threads: int = 1):
        (envpool,) = import_optional("envpool", "--vector-mode envpool needs EnvPool", "envpool")
        if env_id not in envpool.list_all_envs():
            raise UserError(f"EnvPool has no task '{env_id}' (--vector-mode envpool); its MuJoCo tasks include "
                            "HalfCheetah-v5, Hopper-v5, Walker2d-v5 and Ant-v5, or use --vector-mode sync.")
        try:
            self.pool = envpool.make_gymnasium(env_id, num_envs=num_envs, batch_size=num_envs, seed=seed,
                                               num_threads=threads, **(env_kwargs or {}))
        except (TypeError, ValueError, RuntimeError) as e:
            raise UserError(f"EnvPool cannot make '{env_id}' with env_kwargs {env_kwargs or {}}: {e}") from None
        self.env_id, self.num_envs, self.device = env_id, num_envs, torch.device("cpu")
        space = self.pool.action_space
        self.obs_dim, self.act_dim = int(self.pool.observation_space.shape[0]), int(space.shape[0])
        self._low, self._half_range = space.low.astype(np.float32), (space.high - space.low).astype(np.float32) / 2
        self._in_order = np.arange(num_envs)

    def reset(self) -> torch.Tensor:
        obs, _ = self._call("reset", self.pool.reset)
        return self._checked(obs, "at a reset")

    def step(self, action: torch.Tensor) -> BatchedStep:
        scaled = self._low + (action.numpy() + 1.0) * self._half_range
        obs, reward, terminated, truncated, info = self._call("step", self.pool.step, scaled)
        if not np.array_equal(info["env_id"], self._in_order):  # a synchronous pool answers in env order
            rows = np.argsort(info["env_id"])  # env i's row
            obs, reward, terminated, truncated = obs[rows], reward[rows], terminated[rows], truncated[rows]
        next_obs = final_obs = self._checked(obs, "")
        reward = self._checked_reward(reward)
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            reset_obs, _, _, _, reset_info = self._call("reset", self.pool.step, np.zeros((len(ended), self.act_dim)),
                                                        ended)
            next_obs = final_obs.clone()
            next_obs[torch.as_tensor(reset_info["env_id"])] = self._checked(reset_obs, "at a reset")
        return BatchedStep(next_obs, reward, torch.from_numpy(terminated), torch.from_numpy(truncated), final_obs)

    def close(self) -> None:
        self.pool.close()


def make_batched_env(env_id: str, num_envs: int, mode: str, seed: int, env_kwargs: dict | None = None,
                     threads: int = 1) -> BatchedEnv:
    """`num_envs` envs of `env_id` behind the protocol, on the CPU: EnvPool's (`mode` "envpool", stepped by up to
    `threads` threads), MuJoCo Playground's in MJX (`mode` "mjx"), mjlab's in MuJoCo Warp (`mode` "mjlab") or the
    torch-native task (`mode` "torch"). The torch-native tasks can live on a GPU too (their `device`); a run keeps
    them on the CPU until that path has been run and measured on one."""
    if mode == "envpool":
        return EnvPool(env_id, num_envs, seed, env_kwargs, min(num_envs, threads))
    if mode == "mjx":
        if not env_id.startswith("playground/"):
            raise UserError(f"--vector-mode mjx runs MuJoCo Playground's tasks (playground/<Task>, for example "
                            f"playground/CheetahRun); '{env_id}' is not one.")
        from pathwise.envs.playground import Playground
        return Playground(env_id, num_envs, seed, env_kwargs)
    if mode == "mjlab":
        if not env_id.startswith("mjlab/"):
            raise UserError(f"--vector-mode mjlab runs mjlab's tasks (mjlab/<Task>, for example "
                            f"mjlab/Cartpole-Swingup); '{env_id}' is not one.")
        from pathwise.envs.mjlab import Mjlab
        return Mjlab(env_id, num_envs, seed, env_kwargs)
    from pathwise.envs.torch_envs import TORCH_ENVS
    if env_id not in TORCH_ENVS:
        raise UserError(f"--vector-mode torch has no task '{env_id}'; it has {', '.join(TORCH_ENVS)}.")
    if env_kwargs:
        raise UserError(f"--vector-mode torch takes no env_kwargs; '{env_id}' was given {env_kwargs}.")
    return TORCH_ENVS[env_id](num_envs)
