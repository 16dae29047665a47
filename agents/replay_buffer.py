"""A circular replay buffer of pre-allocated tensors on the training device."""

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, O)
    action: torch.Tensor  # (B, A), in [-1, 1]
    reward: torch.Tensor  # (B,)
    next_obs: torch.Tensor  # (B, O): the true next observation, also at a time-limit truncation
    terminated: torch.Tensor  # (B,): 1.0 only at a true terminal state, where bootstrapping stops


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, seed: int = 0):
        self.capacity, self.device = capacity, device
        # empty, not zeros: rows are written before they are read, and untouched pages cost no memory.
        self.obs = torch.empty((capacity, obs_dim), dtype=torch.float32, device=device)
        self.action = torch.empty((capacity, act_dim), dtype=torch.float32, device=device)
        self.reward = torch.empty((capacity,), dtype=torch.float32, device=device)
        self.next_obs = torch.empty((capacity, obs_dim), dtype=torch.float32, device=device)
        self.terminated = torch.empty((capacity,), dtype=torch.float32, device=device)
        self.pos, self.size = 0, 0
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self._stores = (self.obs, self.action, self.reward, self.next_obs, self.terminated)
        # On the CPU, NumPy views of the same memory: a step's transition is written without any torch op.
        self._host_views = tuple(t.numpy() for t in self._stores) if self.device.type == "cpu" else None

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Store N transitions (leading dimension N of every argument)."""
        n = len(obs)
        values = (obs, action, reward, next_obs, terminated)
        end = self.pos + n
        rows = slice(self.pos, end) if end <= self.capacity else np.arange(self.pos, end) % self.capacity
        if self._host_views is not None:
            for view, value in zip(self._host_views, values):
                view[rows] = value
        else:
            for store, value in zip(self._stores, values):
                store[rows] = torch.as_tensor(np.asarray(value), dtype=torch.float32).to(self.device, non_blocking=True)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict:
        """The stored rows only (a buffer not yet full saves only what it holds), position and sampling RNG."""
        n = self.size
        # clone(): torch.save writes a view's whole storage, which would be the full capacity.
        state = {name: t[:n].clone() for name, t in zip(("obs", "action", "reward", "next_obs", "terminated"),
                                                        self._stores)}
        return {**state, "pos": self.pos, "generator": self.generator.get_state(), "device_type": self.device.type}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["reward"])
        if n > self.capacity:
            raise ValueError(f"a buffer of {n} transitions does not fit a capacity of {self.capacity}")
        for name in ("obs", "action", "reward", "next_obs", "terminated"):
            getattr(self, name)[:n] = state[name].to(self.device)
        self.size, self.pos = n, state["pos"] % self.capacity
        if state["device_type"] == self.device.type:
            self.generator.set_state(state["generator"])
        else:  # a CPU generator's state does not fit a CUDA one: sampling goes on from a fresh, seeded stream
            self.generator.manual_seed(int(state["generator"].sum()) + self.pos)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=self.generator)
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx], self.terminated[idx])
