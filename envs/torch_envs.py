"""Torch-native batched envs: many copies of a small task stepped as tensor arithmetic on any device, with no host
sync in `step`, so a whole training loop around them can be compiled or graph-captured. Pendulum has Gymnasium's
Pendulum-v1 dynamics (it only truncates); the continuous cart-pole has CartPole-v1's, with the force a continuous
action (it terminates). Both follow the batched-env protocol of envs/batched.py."""

import math

import gymnasium as gym
import numpy as np
import torch

from pathwise.envs.batched import BatchedStep


class TorchEnv:
    """What the tasks share: the batch's state, step counts and time limit, and the same-step autoreset (an ended
    env's next observation is its new episode's first; `final_obs` keeps the last one of the old). A subclass gives
    its sizes, its initial states' range (`initial_high`: uniform in [-high, high]) and `dynamics`. Actions are in
    [-1, 1]. Initial states come from torch's default generator of the device, as the agent's samples do: the run's
    seed seeds it, its checkpoints save it, and a compiled or graph-captured step can draw from it (an explicit
    torch.Generator breaks the graph)."""

    obs_dim: int
    act_dim: int
    max_episode_steps: int
    initial_high: tuple[float, ...]

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        self.high = torch.tensor(self.initial_high, dtype=dtype, device=self.device)
        self.state = torch.zeros((num_envs, len(self.initial_high)), dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    def initial_states(self) -> torch.Tensor:
        u = torch.rand((self.num_envs, len(self.initial_high)), dtype=self.dtype, device=self.device)
        return (2 * u - 1) * self.high  # (N, S)

    def reset(self) -> torch.Tensor:
        self.state = self.initial_states()
        self.elapsed.zero_()
        return self.observe(self.state)

    def step(self, action: torch.Tensor) -> BatchedStep:
        state, reward, terminated = self.dynamics(self.state, action.to(self.dtype))
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps  # as Gymnasium's TimeLimit: also where terminated
        ended = terminated | truncated
        final_obs = self.observe(state)
        # New states are drawn for every env and kept where one ended: the same work at every step, no branch.
        self.state = torch.where(ended[:, None], self.initial_states(), state)
        self.elapsed = torch.where(ended, 0, self.elapsed)
        return BatchedStep(self.observe(self.state), reward.float(), terminated, truncated, final_obs)

    @property
    def time_limit(self) -> int:
        return self.max_episode_steps

    def start_elapsed(self, steps: np.ndarray) -> None:
        """Count each env's current episode as `steps` (N,) steps old: it is truncated that much sooner."""
        self.elapsed = torch.as_tensor(steps, dtype=torch.int64).to(self.device)

    def state_dict(self) -> dict:
        return {"state": self.state.cpu().clone(), "elapsed": self.elapsed.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.state = state["state"].to(self.device, self.dtype)
        self.elapsed = state["elapsed"].to(self.device)

    def close(self) -> None:
        pass


class Pendulum(TorchEnv):
    """Gymnasium's Pendulum-v1: swing a pendulum up and hold it; 200 steps, no termination."""

    obs_dim, act_dim, max_episode_steps = 3, 1, 200
    initial_high = (math.pi, 1.0)  # the state: angle, angular velocity
    max_speed, max_torque, dt, g, m, length = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        th, thdot = state.unbind(1)
        return torch.stack([th.cos(), th.sin(), thdot], dim=1).float()  # (N, 3)

    def dynamics(self, state, action):
        th, thdot = state.unbind(1)
        u = (action[:, 0] * self.max_torque).clamp(-self.max_torque, self.max_torque)
        normalized = torch.remainder(th + math.pi, 2 * math.pi) - math.pi
        costs = normalized**2 + 0.1 * thdot**2 + 0.001 * u**2
        g, m, length, dt = self.g, self.m, self.length, self.dt
        thdot = thdot + (3 * g / (2 * length) * th.sin() + 3.0 / (m * length**2) * u) * dt
        thdot = thdot.clamp(-self.max_speed, self.max_speed)
        th = th + thdot * dt
        return torch.stack([th, thdot], dim=1), -costs, torch.zeros_like(costs, dtype=torch.bool)


class CartPole(TorchEnv):
    """Gymnasium's CartPole-v1 with a continuous push (force_mag times the action, in [-1, 1]): keep the pole up
    and the cart on the track; reward 1 a step, ends when the pole tilts past 12 degrees or the cart leaves
    [-2.4, 2.4]; 500 steps."""

    obs_dim, act_dim, max_episode_steps = 4, 1, 500
    initial_high = (0.05,) * 4  # the state: x, x_dot, theta, theta_dot
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_threshold, x_threshold = 12 * 2 * math.pi / 360, 2.4

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.float()

    def dynamics(self, state, action):
        x, x_dot, theta, theta_dot = state.unbind(1)
        force = self.force_mag * action[:, 0].clamp(-1.0, 1.0)
        total_mass, polemass_length = self.masspole + self.masscart, self.masspole * self.length
        cos, sin = theta.cos(), theta.sin()
        temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
        thetaacc = (self.gravity * sin - cos * temp) / (self.length * (4.0 / 3.0 - self.masspole * cos**2
                                                                         / total_mass))
        xacc = temp - polemass_length * thetaacc * cos / total_mass
        # Euler, as CartPole-v1: positions move with the old velocities
        x, x_dot = x + self.tau * x_dot, x_dot + self.tau * xacc
        theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc
        terminated = (x.abs() > self.x_threshold) | (theta.abs() > self.theta_threshold)
        return torch.stack([x, x_dot, theta, theta_dot], dim=1), torch.ones_like(x), terminated


# The tasks by Gymnasium id: what --vector-mode torch runs. Pendulum-v1 is Gymnasium's own (its evaluation env);
# the cart-pole is registered below, one env of a batch of one.
TORCH_ENVS = {"Pendulum-v1": Pendulum, "pathwise/CartPoleContinuous-v0": CartPole}


class AsGymEnv(gym.Env):
    """One env of a torch-native task as a Gymnasium env (float64, on the CPU): its evaluation env, and what the
    sync and async vector modes step. Its initial states come from its own NumPy generator, as Gymnasium's envs'
    do: it leaves torch's streams alone."""

    metadata = {"render_modes": []}

    def __init__(self, task: type[TorchEnv]):
        self.task = task(1, dtype=torch.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (task.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (task.act_dim,), np.float32)
        self.elapsed = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        high = np.array(self.task.initial_high)
        self.task.state, self.elapsed = torch.from_numpy(self.np_random.uniform(-high, high))[None], 0  # (1, S)
        return self.task.observe(self.task.state)[0].numpy(), {}

    def step(self, action):
        action = torch.as_tensor(np.asarray(action), dtype=torch.float64).reshape(1, -1)
        self.task.state, reward, terminated = self.task.dynamics(self.task.state, action)
        self.elapsed += 1
        return (self.task.observe(self.task.state)[0].numpy(), float(reward[0]), bool(terminated[0]),
                self.elapsed >= self.task.max_episode_steps, {})


if "pathwise/CartPoleContinuous-v0" not in gym.registry:
    gym.register("pathwise/CartPoleContinuous-v0", entry_point=AsGymEnv, kwargs={"task": CartPole})
