"""A circular replay buffer of pre-allocated tensors on the training device, with n-step returns at sampling."""

import numpy as np
import torch

from pathwise.agents.batch import Batch
from pathwise.her import Hindsight

FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "ended")
SCALARS = ("reward", "terminated", "ended")  # one number per transition: (capacity,) views


class ReplayBuffer:
    """Transitions of `num_envs` sub-envs, stored a step at a time (sub-env i of a step at row pos + i), so one
    sub-env's next transition lies `num_envs` rows on, modulo the capacity.

    With `n_step` > 1 a sampled transition's reward is the discounted sum of the rewards of up to n consecutive
    transitions of its sub-env, and next_obs, terminated and discount are those of the last one. The sum stops
    early at the end of an episode (termination or time limit: `ended`) and at the newest transition stored.

    With `hindsight`, a share of each batch has its goal relabelled (pathwise.her).
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, seed: int = 0,
                 gamma: float = 0.99, n_step: int = 1, num_envs: int = 1, hindsight: Hindsight | None = None):
        self.capacity, self.device = capacity, device
        self.gamma, self.n_step, self.num_envs = gamma, n_step, num_envs
        self.hindsight = hindsight
        # One row per transition, its fields side by side (obs, action, reward, next_obs, terminated, ended), each
        # field a view: on a GPU a step's transition is one host-to-device copy and a batch one gather. empty, not
        # zeros: rows are written before they are read, and untouched pages cost no memory.
        widths = (obs_dim, act_dim, 1, obs_dim, 1, 1)
        self.storage = torch.empty((capacity, sum(widths)), dtype=torch.float32, device=device)
        starts = np.cumsum((0, *widths))
        self._columns = [slice(int(a), int(b)) for a, b in zip(starts, starts[1:])]
        self._stores = tuple(self.storage[:, c.start] if name in SCALARS else self.storage[:, c]
                             for c, name in zip(self._columns, FIELDS))
        self.obs, self.action, self.reward, self.next_obs, self.terminated, self.ended = self._stores
        self.pos, self.size = 0, 0
        # Rows of dropped episodes (`drop`), never sampled until written again; kept only once there are any.
        self.dropped: torch.Tensor | None = None  # (capacity,) bool
        self.n_dropped = 0
        self.generator = torch.Generator(device=device).manual_seed(seed)
        if self.device.type == "cpu":  # NumPy views of the same memory: a step's transition is written without torch
            self._host_views = tuple(t.numpy() for t in self._stores)
        else:  # a pinned row per sub-env, copied without blocking; the event says when it may be written again
            self._staging = torch.empty((num_envs, sum(widths)), dtype=torch.float32, pin_memory=True)
            self._staged = torch.cuda.Event()
        self._one_step_discount = torch.full((0,), gamma, device=device)
        steps = torch.arange(n_step, device=device)
        self._exponents = steps.float()  # (n,)
        self._gamma_powers = gamma ** self._exponents  # (n,)
        self._offsets = steps * num_envs  # (n,): rows from a transition to its sub-env's next ones

    def set_gamma(self, gamma: float) -> None:
        """The discount of the batches sampled from now on (a schedule's: `pathwise.schedule.discount`)."""
        if gamma != self.gamma:
            self.gamma = gamma
            self._one_step_discount.fill_(gamma)
            torch.pow(gamma, self._exponents, out=self._gamma_powers)  # in place: no allocation per env step

    def __len__(self) -> int:
        """The transitions that may be sampled."""
        return self.size - self.n_dropped

    def drop(self, sub_env: int, transitions: int) -> None:
        """Never sample the newest `transitions` rows of sub-env `sub_env` (an episode dropped: the env returned a
        non-finite number), until they are written again."""
        if self.dropped is None:
            self.dropped = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)
        # Sub-env i's row k steps back is still stored while k * num_envs - i <= size.
        k = torch.arange(1, min(transitions, (self.size + sub_env) // self.num_envs) + 1, device=self.device)
        rows = (self.pos - k * self.num_envs + sub_env) % self.capacity
        self.n_dropped += int((~self.dropped[rows]).sum())
        self.dropped[rows] = True

    def add(self, obs: np.ndarray | torch.Tensor, action, reward, next_obs, terminated, ended=None) -> None:
        """Store N transitions (leading dimension N of every argument: NumPy arrays, or CPU tensors).
        `ended`: the episode ended with the transition, by termination or time limit (default: where
        terminated)."""
        n = len(obs)
        values = (obs, action, reward, next_obs, terminated, terminated if ended is None else ended)
        if isinstance(obs, torch.Tensor):  # a batched env's transition (CPU tensors): NumPy views of that memory
            values = tuple(v.numpy() for v in values)
        end = self.pos + n
        rows = slice(self.pos, end) if end <= self.capacity else np.arange(self.pos, end) % self.capacity
        if self.device.type == "cpu":
            for view, value in zip(self._host_views, values):
                view[rows] = value
        else:
            self._staged.synchronize()  # the previous step's copy has left the staging rows
            staging = self._staging[:n].numpy()
            for column, value in zip(self._columns, values):
                staging[:, column] = np.asarray(value, dtype=np.float32).reshape(n, -1)
            if isinstance(rows, slice):
                self.storage[rows].copy_(self._staging[:n], non_blocking=True)
            else:  # wrapping around the end
                self.storage[torch.as_tensor(rows, device=self.device)] = self._staging[:n].to(self.device)
            self._staged.record()
        if self.n_dropped:  # rows written again are sampled again
            written = torch.as_tensor(np.arange(self.pos, end) % self.capacity, device=self.device)
            self.n_dropped -= int(self.dropped[written].sum())
            self.dropped[written] = False
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        if self.hindsight is not None:
            self.hindsight.record(np.arange(end - n, end) % self.capacity, np.asarray(values[5], bool), self.size)

    def end_episodes(self, mask: np.ndarray) -> None:
        """The episodes in flight of the sub-envs in `mask` (N,) end with their newest stored transition (their
        envs began anew, e.g. at a resume that could not put them back): no n-step sum or future goal crosses."""
        for i in np.flatnonzero(mask):
            newest = (self.pos - self.num_envs + i) % self.capacity
            if i >= self.size or self.ended[newest]:
                continue
            self.ended[newest] = 1.0
            if self.hindsight is not None:
                self.hindsight.close(int(i), newest, self.size)

    def state_dict(self) -> dict:
        """The stored rows only (a buffer not yet full saves only what it holds), position and sampling RNG."""
        n = self.size
        # clone(): torch.save writes a view's whole storage, which would be the full capacity.
        state = {name: t[:n].clone() for name, t in zip(FIELDS, self._stores)}
        if self.n_dropped:
            state["dropped"] = self.dropped[:n].cpu().clone()
        if self.hindsight is not None:
            state["hindsight"] = self.hindsight.state_dict(n)
        return {**state, "pos": self.pos, "generator": self.generator.get_state(), "device_type": self.device.type}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["reward"])
        if n > self.capacity:
            raise ValueError(f"a buffer of {n} transitions does not fit a capacity of {self.capacity}")
        for name in FIELDS:
            # A checkpoint from before `ended` was stored: every transition ends its own sum (one-step returns).
            value = state.get(name, torch.ones(n)) if name == "ended" else state[name]
            getattr(self, name)[:n] = value.to(self.device)
        self.size, self.pos = n, state["pos"] % self.capacity
        self.dropped, self.n_dropped = None, 0
        if "dropped" in state:
            self.dropped = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)
            self.dropped[:n] = state["dropped"].to(self.device)
            self.n_dropped = int(state["dropped"].sum())
        if self.hindsight is not None:
            self.hindsight.load_state_dict(state["hindsight"])
        if state["device_type"] == self.device.type:
            self.generator.set_state(state["generator"])
        else:  # a CPU generator's state does not fit a CUDA one: sampling goes on from a fresh, seeded stream
            self.generator.manual_seed(int(state["generator"].sum()) + self.pos)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=self.generator)
        if self.n_dropped:  # draw again where a dropped row was drawn (and only then: other runs draw as before)
            if len(self) == 0:
                raise ValueError("every stored transition belongs to a dropped episode")
            redraw = self.dropped[idx]
            while bool(redraw.any()):
                idx[redraw] = torch.randint(0, self.size, (int(redraw.sum()),), device=self.device,
                                            generator=self.generator)
                redraw = self.dropped[idx]
        return self.gather(idx)

    def gather(self, idx: torch.Tensor) -> Batch:
        """The transitions at rows `idx` (B,), each with its n-step return (and its goal relabelled, for the
        first share of them, with hindsight)."""
        if self.n_step == 1 and self.hindsight is None:
            if len(self._one_step_discount) < len(idx):
                self._one_step_discount = torch.full((len(idx),), self.gamma, device=self.device)
            discount = self._one_step_discount[:len(idx)]
            if self.device.type == "cpu":  # a gather per field: contiguous fields, as the CPU kernels were timed with
                return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx],
                             self.terminated[idx], discount)
            rows = self.storage[idx]  # (B, W): on a GPU one launch, not six
            obs, action, reward, next_obs, terminated, _ = (rows[:, c] for c in self._columns)
            return Batch(obs, action, reward[:, 0], next_obs, terminated[:, 0], discount)
        rows = (idx[:, None] + self._offsets) % self.capacity  # (B, n): the sub-env's next transitions
        reward, terminated, ended = self.reward[rows], self.terminated[rows], self.ended[rows]  # (B, n) each
        obs, goal = self.obs[idx], None
        if self.hindsight is not None:
            m = self.hindsight.share(len(idx))
            goal = self.hindsight.goals(idx[:m], self.next_obs, self.generator)  # (M, G)
            new_reward, new_terminated = self.hindsight.rewards(self.next_obs[rows[:m]], goal)
            reward[:m] = new_reward
            if new_terminated is not None:
                terminated[:m] = new_terminated
                ended[:m] = torch.maximum(ended[:m], new_terminated)
            obs[:m, self.hindsight.desired] = goal
        # A row belongs to the sum if it is already written (its age in write order is at most the newest's) and
        # no earlier row of the sum ended its episode; both hold for a prefix of the n rows.
        oldest = self.pos if self.size == self.capacity else 0
        age = (idx - oldest) % self.capacity  # (B,)
        written = age[:, None] + self._offsets <= self.size - 1  # (B, n)
        open_before = torch.cumprod(1.0 - ended, dim=1).roll(1, dims=1)  # (B, n)
        open_before[:, 0] = 1.0
        used = written & (open_before > 0)  # (B, n), the first column always
        k = used.sum(dim=1)  # (B,) rewards in the sum, 1..n
        last = rows.gather(1, (k - 1)[:, None]).squeeze(1)  # (B,)
        # where, not a product: a row not yet written holds whatever the memory held, NaN included.
        reward = torch.where(used, reward * self._gamma_powers, 0.0).sum(dim=1)
        next_obs = self.next_obs[last]
        if goal is not None:
            next_obs[:len(goal), self.hindsight.desired] = goal
        return Batch(obs, self.action[idx], reward, next_obs, terminated.gather(1, (k - 1)[:, None]).squeeze(1),
                     self.gamma ** k.float())
