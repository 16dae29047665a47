"""mjlab's tasks (MuJoCo Warp behind a torch API, in Isaac Lab's manager-based design) behind the batched-env
protocol, as `mjlab/<Task>` for mjlab's `Mjlab-<Task>` (`mjlab/Cartpole-Swingup`, `mjlab/Velocity-Flat-Unitree-Go1`,
...): `--vector-mode mjlab` steps N of them as one mjlab env, and one of them is a Gymnasium env for evaluation.

The envs run on the CPU (Warp builds its kernels for it once and caches them: a minute or two the first time); mjlab's
GPU path is for when one has run it. mjlab resets an ended env inside its step, and returns the new episode's first
observation in place of the last one; here its auto-reset is off, so its step returns the observations the episodes
ended on (`final_obs`) and the ended envs are reset after it. The observation is the task's "actor" group (what its
policy sees when deployed); an action in [-1, 1] goes to the task's action terms as it is. mjlab draws its resets
and observation noise from torch's global generator: each engine here keeps a generator state of its own, seeded
when it is made, so the envs' draws are not the run's. Its episodes cannot be put back at a resume: they start anew.
"""

import contextlib
import io
import os

import gymnasium as gym
import numpy as np
import torch

from pathwise.envs.batched import BatchedStep, Engine, OneEnv
from pathwise.envs.make import import_optional
from pathwise.errors import UserError

PREFIX = "mjlab/"
GROUP = "actor"


def _registry():
    os.environ.setdefault("MJLAB_WARP_QUIET", "1")  # Warp names every kernel it builds, unless told not to
    registry, envs = import_optional("mjlab", "the mjlab/ tasks need mjlab", "mjlab.tasks.registry", "mjlab.envs")
    return registry, envs


def _config(env_id: str, num_envs: int, env_kwargs: dict):
    """mjlab's training config of `env_id` for `num_envs` envs, auto-reset off, `env_kwargs` set on it."""
    registry, _ = _registry()
    name = "Mjlab-" + env_id.removeprefix(PREFIX)
    if name not in registry.list_tasks():
        tasks = ", ".join(task.removeprefix("Mjlab-") for task in registry.list_tasks())
        raise UserError(f"mjlab has no task '{name}' ({env_id}); as mjlab/<Task> it has {tasks}.")
    config = registry.load_env_cfg(name)
    unknown = sorted(key for key in env_kwargs if not hasattr(config, key))
    if unknown:
        fields = ", ".join(sorted(key for key in vars(config) if not key.startswith("_")))
        raise UserError(f"{env_id}'s config has no {', '.join(unknown)}; it has {fields}.")
    for key, value in env_kwargs.items():
        setattr(config, key, value)
    config.scene.num_envs, config.auto_reset, config.seed = num_envs, False, None
    return config


class Mjlab(Engine):
    """N envs of an mjlab task as one mjlab env on the CPU, behind the protocol. An episode is truncated at the
    task's time limit (`episode_length_s` over its control step), terminated where its termination terms say; as
    mjlab reports them, an episode can be both."""

    engine = "mjlab"

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None):
        _, envs = _registry()
        self.env_id, self.num_envs, self.device = env_id, num_envs, torch.device("cpu")
        config = _config(env_id, num_envs, env_kwargs or {})
        self.seed(seed)
        with self._own_draws():
            self.env = self._call("making its envs", lambda: envs.ManagerBasedRlEnv(cfg=config, device="cpu"))
        shape = self.env.observation_manager.group_obs_dim.get(GROUP)
        if not (isinstance(shape, tuple) and len(shape) == 1):
            self.env.close()
            raise UserError(f"{env_id} has no flat '{GROUP}' observation group (it has "
                            f"{self.env.observation_manager.group_obs_dim}); pathwise runs tasks whose policy "
                            "observes one flat array.")
        self.obs_dim, self.act_dim = shape[0], int(self.env.action_manager.total_action_dim)
        self.time_limit = int(self.env.max_episode_length)

    def seed(self, seed: int) -> None:
        self.draws = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def _own_draws(self):
        """torch's global generator set to the envs' own state for what mjlab does inside, and given back after;
        what mjlab prints (its managers' tables) kept quiet."""
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            torch.set_rng_state(self.draws)
            yield
            self.draws = torch.get_rng_state()

    def _observed(self, obs: dict, where: str) -> torch.Tensor:
        """The policy's observations, copied (what the run holds is its own, never mjlab's buffers), checked as every
        engine's are."""
        return self._checked(obs[GROUP].float().numpy().copy(), where)

    def reset(self) -> torch.Tensor:
        with self._own_draws():
            obs, _ = self._call("reset", self.env.reset)
        return self._observed(obs, "at a reset")

    def step(self, action: torch.Tensor) -> BatchedStep:
        with self._own_draws():
            obs, reward, terminated, truncated, _ = self._call("step", self.env.step, action.detach().float())
            final_obs = self._observed(obs, "")
            terminated, truncated = terminated.clone(), truncated.clone()
            ended, next_obs = terminated | truncated, final_obs
            if ended.any():
                ids = ended.nonzero().squeeze(-1)
                fresh, _ = self._call("reset", lambda: self.env.reset(env_ids=ids))
                next_obs = torch.where(ended.unsqueeze(-1), self._observed(fresh, "at a reset"), final_obs)
        reward = self._checked_reward(reward.float().numpy().copy())
        return BatchedStep(next_obs, reward, terminated, truncated, final_obs)

    def start_elapsed(self, steps: np.ndarray) -> None:
        """Count each env's current episode as `steps` (N,) steps old: it is truncated that much sooner."""
        self.env.episode_length_buf[:] = torch.as_tensor(steps, dtype=self.env.episode_length_buf.dtype)

    def close(self) -> None:
        self.env.close()


class MjlabEnv(OneEnv):
    """One env of an mjlab task as a Gymnasium env (`--vector-mode mjlab`'s evaluation env); `reset(seed=s)` seeds
    its own draws."""

    def __init__(self, task: str, **env_kwargs):
        super().__init__(Mjlab(PREFIX + task, 1, 0, env_kwargs))


def _register() -> None:
    registry, _ = _registry()
    for name in registry.list_tasks():
        env_id = PREFIX + name.removeprefix("Mjlab-")
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=MjlabEnv, kwargs={"task": name.removeprefix("Mjlab-")})


_register()
