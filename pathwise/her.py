"""Hindsight experience replay (Andrychowicz et al., 2017): at sampling time, a share of each batch is given a goal
that its episode went on to achieve ("future" strategy), and its rewards are computed again for that goal."""

from collections.abc import Callable

import numpy as np
import torch

GOAL_KEYS = ("achieved_goal", "desired_goal")


class Hindsight:
    """What the replay buffer needs to relabel goals: where the goals lie in the flat observation, the env's
    `compute_reward(achieved_goal, desired_goal, info)` (and `compute_terminated`, where the env has one), and
    which episode each stored row belongs to.

    Of each sampled batch, the first `relabels / (relabels + 1)` (4 relabels: 80%, as in the paper and SB3) get as
    their goal the goal achieved after a transition of their own episode at or after theirs, drawn uniformly
    (`achieved_goal` of that transition's next observation). Their rewards, and with n-step returns the rewards
    of every transition in the sum, are those `compute_reward` gives for the new goal; the env's `info` is not
    stored, so it is passed as an empty dict: HER fits envs whose reward depends on the goals alone (Fetch, Hand,
    the point-reaching test env). `terminated` is computed again where the env has `compute_terminated`; an
    episode's stored end (a time limit, or termination under its own goal) still ends an n-step sum.
    """

    def __init__(self, columns: dict[str, slice], compute_reward: Callable, compute_terminated: Callable | None,
                 relabels: int, capacity: int, num_envs: int, device: torch.device):
        self.achieved, self.desired = columns["achieved_goal"], columns["desired_goal"]
        self.compute_reward, self.compute_terminated = compute_reward, compute_terminated
        self.relabels, self.num_envs, self.device = relabels, num_envs, device
        # Each row's sub-env, its step within its episode, and its episode's length once the episode has ended
        # (-1 while it goes on: then the transitions stored so far of its sub-env's episode in flight count).
        self.sub_env = torch.zeros(capacity, dtype=torch.int64, device=device)
        self.step = torch.zeros(capacity, dtype=torch.int64, device=device)
        self.length = torch.full((capacity,), -1, dtype=torch.int64, device=device)
        self.in_flight = np.zeros(num_envs, dtype=np.int64)  # (N,) transitions of each sub-env's open episode
        self.terminated_per_pair = compute_terminated is not None and self._judges_one_pair_only()

    def _judges_one_pair_only(self) -> bool:
        """Whether `compute_terminated` gives one verdict for a whole batch that its pairs, asked one by one,
        would not agree on (Gymnasium-Robotics' episodic mazes judge the batch as one pair): then it is asked
        pair by pair. A batch-wide constant (Fetch's False) is broadcast."""
        size = self.achieved.stop - self.achieved.start
        achieved, desired = np.zeros((2, size)), np.stack([np.zeros(size), np.full(size, 1e3)])  # a hit, a miss
        together = np.asarray(self.compute_terminated(achieved, desired, [{}, {}]))
        alone = [bool(self.compute_terminated(a, d, {})) for a, d in zip(achieved, desired)]
        return together.ndim == 0 and alone[0] != alone[1]

    def record(self, rows: np.ndarray, ended: np.ndarray, stored: int) -> None:
        """Rows (N,) just written, sub-env i's at rows[i]; `ended` (N,) where that ended its episode; `stored`:
        the rows the buffer holds now."""
        rows_t = torch.as_tensor(rows, device=self.device)
        self.sub_env[rows_t] = torch.arange(self.num_envs, device=self.device)
        self.step[rows_t] = torch.as_tensor(self.in_flight, device=self.device)
        self.length[rows_t] = -1
        self.in_flight += 1
        for i in np.flatnonzero(ended):
            self.close(i, int(rows[i]), stored)

    def close(self, sub_env: int, newest: int, stored: int) -> None:
        """End the episode in flight of `sub_env`, whose newest row is `newest`; `stored`: the rows the buffer
        holds (an episode's rows older than those were written over)."""
        length = int(self.in_flight[sub_env])
        # Its row k steps before the newest is still its own while (k + 1) * num_envs - sub_env <= stored (the write
        # position moves num_envs rows a step, and a capacity need not be a multiple of num_envs).
        back = torch.arange(min(length, (stored + sub_env) // self.num_envs), device=self.device)
        self.length[(newest - back * self.num_envs) % len(self.length)] = length
        self.in_flight[sub_env] = 0

    def goals(self, idx: torch.Tensor, next_obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For rows `idx` (M,): a goal (M, G) achieved at or after each, in its own episode."""
        in_flight = torch.as_tensor(self.in_flight, device=self.device)
        length = torch.where(self.length[idx] >= 0, self.length[idx], in_flight[self.sub_env[idx]])
        later = length - self.step[idx]  # (M,): this transition and those after it, >= 1
        ahead = (torch.rand(len(idx), device=self.device, generator=generator) * later).long()
        future = (idx + ahead * self.num_envs) % len(self.length)
        return next_obs[future, self.achieved]

    def rewards(self, next_obs: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rewards and, where the env computes it, `terminated` (both (M, n)) of transitions whose next
        observations are `next_obs` (M, n, O) under the goals `goal` (M, G)."""
        achieved = next_obs[..., self.achieved].cpu().numpy()  # (M, n, G)
        desired = np.broadcast_to(goal.cpu().numpy()[:, None], achieved.shape)
        flat_a, flat_d = achieved.reshape(-1, achieved.shape[-1]), desired.reshape(-1, achieved.shape[-1])
        info, shape = [{}] * len(flat_a), achieved.shape[:-1]
        # An n-step sum's rows past the newest transition hold whatever the memory held (the buffer leaves them out
        # of the sum): what NumPy would say of their overflow is noise.
        with np.errstate(all="ignore"):
            reward = np.asarray(self.compute_reward(flat_a, flat_d, info), np.float32).reshape(shape)
            if self.compute_terminated is None:
                return torch.as_tensor(reward, device=self.device), None
            if self.terminated_per_pair:
                terminated = np.array([self.compute_terminated(a, d, {}) for a, d in zip(flat_a, flat_d)], np.float32)
            else:
                terminated = np.broadcast_to(np.asarray(self.compute_terminated(flat_a, flat_d, info), np.float32),
                                             (len(flat_a),))
        return (torch.as_tensor(reward, device=self.device),
                torch.as_tensor(terminated.reshape(shape).copy(), device=self.device))

    def share(self, batch_size: int) -> int:
        """How many of a batch are relabelled."""
        return round(batch_size * self.relabels / (self.relabels + 1))

    def state_dict(self, stored: int) -> dict:
        return {"sub_env": self.sub_env[:stored].cpu().clone(), "step": self.step[:stored].cpu().clone(),
                "length": self.length[:stored].cpu().clone(), "in_flight": torch.from_numpy(self.in_flight.copy())}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["step"])
        for name in ("sub_env", "step", "length"):
            getattr(self, name)[:n] = state[name].to(self.device)
        self.in_flight = state["in_flight"].numpy().copy()
