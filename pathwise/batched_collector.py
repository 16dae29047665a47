"""The batched env (envs/batched.py) and its episodes in flight: transitions stay tensors on the envs' device."""

import sys

import numpy as np
import torch

from pathwise.envs.batched import BatchedEnv


class BatchedCollector:
    """Steps `envs`, which reset ended envs themselves (in the same step). What it hands on has the shape of
    `Collector`'s, as tensors. The random actions of the warm-up phase come from a generator of the run's seed.
    A resume puts the episodes in flight back where the engine can be put back (the torch-native tasks), and
    otherwise starts them anew, and says so. With `stagger`, the first episodes start part-way through the
    engine's time limit, as old as a draw from the generator, uniform over 0 to the limit less one."""

    def __init__(self, envs: BatchedEnv, seed: int, stagger: bool = False):
        self.envs, self.num_envs = envs, envs.num_envs
        self.obs_dim, self.act_dim = envs.obs_dim, envs.act_dim
        device = envs.device
        self.rng = np.random.default_rng(seed)
        self.obs: torch.Tensor | None = None  # (N, O)
        self.ep_return = torch.zeros(self.num_envs, dtype=torch.float64, device=device)
        self.ep_length = torch.zeros(self.num_envs, dtype=torch.int64, device=device)
        self.restarted = np.zeros(self.num_envs, dtype=bool)
        self.stagger = stagger

    def random_actions(self) -> torch.Tensor:
        actions = self.rng.uniform(-1.0, 1.0, (self.num_envs, self.act_dim)).astype(np.float32)
        return torch.from_numpy(actions).to(self.envs.device)

    def from_agent(self, action: torch.Tensor) -> torch.Tensor:
        return action.to(self.envs.device)

    def start(self) -> None:
        if self.obs is None:
            self.obs = self.envs.reset()
            if self.stagger:
                self.envs.start_elapsed(self.rng.integers(self.envs.time_limit, size=self.num_envs))

    def step(self, action: torch.Tensor) -> tuple[tuple, list[tuple[float, int, None]], list]:
        """As Collector.step: (obs, action, reward, next_obs, terminated, ended) with next_obs the true last
        observation where an episode ended; (return, length, None) of each episode that ended; no dropped
        episodes (a non-finite number stops the run)."""
        out = self.envs.step(action)
        ended = out.terminated | out.truncated
        transition = (self.obs, action, out.reward, out.final_obs, out.terminated, ended)
        self.obs = out.next_obs
        self.ep_return += out.reward
        self.ep_length += 1
        finished = []
        if ended.any():  # the one host sync of a step
            finished = [(r, n, None) for r, n in zip(self.ep_return[ended].tolist(), self.ep_length[ended].tolist())]
            self.ep_return.masked_fill_(ended, 0.0)
            self.ep_length.masked_fill_(ended, 0)
        return transition, finished, []

    def state_dict(self) -> dict:
        state = {"rng": self.rng.bit_generator.state, "obs": self.obs.cpu().clone(),
                 "ep_return": self.ep_return.cpu().clone(), "ep_length": self.ep_length.cpu().clone()}
        if hasattr(self.envs, "state_dict"):
            state["envs"] = self.envs.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        if "envs" in state and hasattr(self.envs, "load_state_dict"):
            self.envs.load_state_dict(state["envs"])
            device = self.envs.device
            self.obs = state["obs"].to(device)
            self.ep_return, self.ep_length = state["ep_return"].to(device), state["ep_length"].to(device)
            return
        print(f"note: {type(self.envs).__name__} cannot put its {self.num_envs} episodes in flight back; they begin "
              "anew (their stored transitions end where the checkpoint was written).", file=sys.stderr, flush=True)
        self.obs = self.envs.reset()
        self.restarted = np.ones(self.num_envs, dtype=bool)
