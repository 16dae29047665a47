"""Tiny environments built for the tests, registered by tests/conftest.py."""

from pathlib import Path

import gymnasium as gym
import numpy as np


class Counter(gym.Env):
    """obs = [t]; every step adds 1. Terminates when t reaches `terminate_at`; a TimeLimit may truncate first.

    A stored transition that does not span a reset always has next_obs = obs + 1.
    """

    def __init__(self, terminate_at: int = 10**9):
        self.terminate_at = terminate_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-3.0, 5.0, (2,), np.float32)
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, np.float32)), action
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t >= self.terminate_at, False, {}


class Reach(gym.Env):
    """One-step task learned in seconds: observe a target in [-2, 2], reward -(action - target)^2."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.target = np.zeros(1, np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-2.0, 2.0, (1,)).astype(np.float32)
        return self.target.copy(), {}

    def step(self, action):
        reward = -float(np.square(np.asarray(action) - self.target).sum())
        return self.target.copy(), reward, True, False, {}


class Unbounded(Counter):
    """A Box action space without finite bounds."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


class Faulty(gym.Wrapper):
    """Pendulum-v1 that misbehaves at its `at`-th step (counted over the env's life): it raises (`fault="raise"`),
    or returns a NaN observation (`"nan_obs"`), an infinite one (`"inf_obs"`) or a NaN reward (`"nan_reward"`);
    or (`"reset"`) raises at its `at`-th reset.
    With `marker` (a file path) it misbehaves once: only while the file does not exist, and it writes it then, so a
    resumed run, in any process, goes on."""

    def __init__(self, fault: str = "raise", at: int = 150, marker: str = ""):
        from gymnasium.envs.classic_control.pendulum import PendulumEnv
        super().__init__(PendulumEnv())
        self.fault, self.at, self.marker, self.steps, self.resets = fault, at, marker, 0, 0

    def _fires(self, count: int) -> bool:
        """Whether this is the `at`-th step or reset, the fault not yet fired where a marker is kept (then kept)."""
        if count != self.at or (self.marker and Path(self.marker).exists()):
            return False
        if self.marker:
            Path(self.marker).touch()
        return True

    def reset(self, **kwargs):
        self.resets += 1
        if self.fault == "reset" and self._fires(self.resets):
            raise RuntimeError("the simulator could not start")
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.fault != "reset" and self._fires(self.steps):
            if self.fault == "raise":
                raise RuntimeError("the simulator became unstable")
            obs = obs.copy()
            if self.fault == "nan_obs":
                obs[1] = np.nan
            elif self.fault == "inf_obs":
                obs[0] = np.inf
            else:
                reward = float("nan")
        return obs, reward, terminated, truncated, info


class PointGoal(gym.Env):
    """A point on the plane [-1, 1]^2 must reach a goal drawn anew each episode: it moves by 0.2 * action, and only
    a step that ends within 0.05 of the goal is rewarded (0, else -1; `is_success` then). Random actions reach
    the goal in about one episode of a hundred, so learning it in a few thousand steps needs relabelling.
    `success_key`: the info key that says so (the mazes of Gymnasium-Robotics say `success`)."""

    def __init__(self, success_key: str = "is_success"):
        self.success_key = success_key
        box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.position, self.goal = np.zeros(2, np.float32), np.zeros(2, np.float32)

    def _obs(self) -> dict:
        return {"observation": self.position.copy(), "achieved_goal": self.position.copy(),
                "desired_goal": self.goal.copy()}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.goal = self.np_random.uniform(-1.0, 1.0, (2, 2)).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        self.position = np.clip(self.position + 0.2 * np.asarray(action, np.float32), -1.0, 1.0)
        reward = float(self.compute_reward(self.position, self.goal, {}))
        return self._obs(), reward, False, False, {self.success_key: reward == 0.0}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -(np.linalg.norm(achieved_goal - desired_goal, axis=-1) > 0.05).astype(np.float32)

    def compute_terminated(self, achieved_goal, desired_goal, info):
        return False


class GoalCounter(gym.Env):
    """obs observation = [t, episode], achieved_goal = [t, episode] (t: steps since reset, episode: resets so far),
    desired_goal = [-1, -1], never reached; reward 0 where the achieved goal equals the desired one, else -1. A
    relabelled goal names the step and the episode it was achieved in."""

    def __init__(self):
        box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"achieved_goal": box, "desired_goal": box, "observation": box})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t, self.episode = 0, -1

    def _obs(self) -> dict:
        now = np.array([self.t, self.episode], np.float32)
        return {"achieved_goal": now, "desired_goal": np.full(2, -1.0, np.float32), "observation": now.copy()}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        obs = self._obs()
        return obs, float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], {})), False, False, {}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -np.any(achieved_goal != desired_goal, axis=-1).astype(np.float32)


def register() -> None:
    if "CounterTerminates-v0" in gym.registry:
        return
    gym.register("CounterTerminates-v0", entry_point=Counter, kwargs={"terminate_at": 3}, max_episode_steps=100)
    gym.register("CounterTruncates-v0", entry_point=Counter, max_episode_steps=3)
    gym.register("Reach-v0", entry_point=Reach)
    gym.register("Unbounded-v0", entry_point=Unbounded)
    gym.register("Faulty-v0", entry_point=Faulty, max_episode_steps=200)
    gym.register("PointGoal-v0", entry_point=PointGoal, max_episode_steps=25)
    gym.register("PointGoalSaysSuccess-v0", entry_point=PointGoal, kwargs={"success_key": "success"},
                 max_episode_steps=25)
    gym.register("GoalCounter-v0", entry_point=GoalCounter, max_episode_steps=5)


register()  # `--env toy_envs:Faulty-v0` imports this module, and finds the ids it registers
