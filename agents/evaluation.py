"""Running a policy for whole episodes and collecting the returns."""

from collections.abc import Callable

import gymnasium as gym
import numpy as np

# Evaluation episodes are seeded apart from the training envs, and alike at every evaluation of a run.
EVAL_SEED_OFFSET = 10_000


def run_episodes(policy: Callable[[np.ndarray], np.ndarray], env: gym.Env, episodes: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of `episodes` episodes, the i-th reset with seed `seed + i`.

    `policy` maps a batch of observations (1, O) to a batch of actions (1, A) in the env's action space.
    """
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs[None])[0])
            returns[i] += float(reward)
            lengths[i] += 1
            done = terminated or truncated
    return returns, lengths
