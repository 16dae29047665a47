"""Running a policy for whole episodes: returns, lengths, and optionally an mp4 of each episode; and the
training run's evaluations."""

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from pathwise.envs import make_env, success_key
from pathwise.errors import UserError

# Evaluation episodes are seeded apart from the training envs, and alike at every evaluation of a run.
EVAL_SEED_OFFSET = 10_000


class Episodes(NamedTuple):
    returns: np.ndarray  # (E,)
    lengths: np.ndarray  # (E,)
    successes: np.ndarray | None  # (E,) 1.0 where the env said success (is_success or success) at the last step
    videos: list[Path]

    @property
    def success_rate(self) -> float | None:
        return None if self.successes is None else float(self.successes.mean())


def run_episodes(policy: Callable[[np.ndarray], np.ndarray], env: gym.Env, episodes: int, seed: int,
                 video_dir: Path | None = None, name: str = "episode") -> Episodes:
    """Returns, lengths, successes and video paths of `episodes` episodes, the i-th reset with seed `seed + i`.

    `policy` maps a batch of observations (1, O) to a batch of actions (1, A) in `env`'s action space.
    With `video_dir`, `env` must have been made with render_mode="rgb_array", and episode i is written to
    `video_dir/<name>-<i>.mp4`.
    """
    returns, lengths, videos = np.zeros(episodes), np.zeros(episodes, dtype=np.int64), []
    successes = np.zeros(episodes)
    said = False
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        frames = [env.render()] if video_dir else []
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs[None])[0])
            returns[i] += float(reward)
            lengths[i] += 1
            done = terminated or truncated
            if video_dir:
                frames.append(env.render())
        if (key := success_key(info)) is not None:
            successes[i], said = float(info[key]), True
        if video_dir:
            videos.append(write_video(frames, video_dir / f"{name}-{i}.mp4", fps=env.metadata.get("render_fps", 30)))
    return Episodes(returns, lengths, successes if said else None, videos)


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    import imageio.v2 as imageio  # imported here: only videos need it

    if not frames or frames[0] is None:
        raise UserError("the environment rendered no frames; it may not support render_mode='rgb_array'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1 keeps odd frame sizes as they are instead of resizing them.
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=7) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


Policy = Callable[[np.ndarray], np.ndarray]


class Evaluator:
    """The training run's deterministic evaluations on an env of its own, each over the same seeded episodes,
    and its videos; every result goes to the logger. `last` is the latest (return mean, return std), and
    `last_success` its success rate (None where the env does not report success)."""

    def __init__(self, env: gym.Env, env_id: str, env_kwargs: dict, seed: int, run_dir: Path, logger,
                 action_repeat: int = 1):
        self.env, self.env_id, self.env_kwargs, self.seed = env, env_id, env_kwargs, seed + EVAL_SEED_OFFSET
        self.action_repeat = action_repeat
        self.run_dir, self.logger = run_dir, logger
        self.last: tuple[float, float] | None = None
        self.last_success: float | None = None

    def evaluate(self, policy: Policy, episodes: int, step: int) -> tuple[float, float]:
        result = run_episodes(policy, self.env, episodes, self.seed)
        self.last = (float(result.returns.mean()), float(result.returns.std()))
        self.last_success = result.success_rate
        self.logger.log_eval(step, *self.last, float(result.lengths.mean()), self.last_success)
        return self.last

    def finite(self) -> bool:
        return self.last is None or math.isfinite(self.last[0])

    def record_video(self, policy: Policy, step: int) -> Path:
        """One deterministic evaluation episode, written to RUN_DIR/videos and logged."""
        env = make_env(self.env_id, render_mode="rgb_array", env_kwargs=self.env_kwargs,
                       action_repeat=self.action_repeat)
        try:
            (path,) = run_episodes(policy, env, 1, self.seed, self.run_dir / "videos", name=f"step_{step:09d}").videos
        finally:
            env.close()
        self.logger.log_video(path, step)
        return path

    def close(self) -> None:
        self.env.close()


class PolicyAverage:
    """A running average of an actor (`policy_average`): after each action's updates every floating-point tensor
    of its state (weights, and normalization statistics) moves `rate` of the way to the actor's; counters are
    copied. Its state travels in every checkpoint as the run's policy."""

    def __init__(self, actor: torch.nn.Module, rate: float):
        self.actor, self.rate = copy.deepcopy(actor), rate
        self.actor.requires_grad_(False)

    @torch.no_grad()
    def update(self, actor: torch.nn.Module) -> None:
        mine, theirs = self.actor.state_dict().values(), actor.state_dict().values()
        floats = [(a, b) for a, b in zip(mine, theirs) if a.is_floating_point()]
        torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], self.rate)
        for a, b in zip(mine, theirs):
            if not a.is_floating_point():
                a.copy_(b)

    def state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.actor.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state)


class BestPolicy:
    """The policy of the run's best evaluation so far (its actor, and the observation normalization it saw, on the
    CPU), written to best.pt at each new best. Its state travels in every checkpoint, so that a run resumed from an
    earlier one rewrites best.pt as its own timeline had it, not as the abandoned one left it."""

    def __init__(self, checkpoints):
        self.checkpoints = checkpoints  # pathwise.checkpoint.Checkpointer
        self.state: dict | None = None  # env_steps, return_mean, actor, and obs_normalizer where there is one

    def consider(self, env_steps: int, return_mean: float, actor: dict, obs_normalizer: dict | None) -> None:
        """Keep this policy, and write it, if its return beats the best so far."""
        if self.state is not None and return_mean <= self.state["return_mean"]:
            return
        self.state = {"env_steps": env_steps, "return_mean": return_mean,
                      "actor": {k: v.detach().cpu().clone() for k, v in actor.items()}}
        if obs_normalizer is not None:
            self.state["obs_normalizer"] = {k: v.cpu().clone() for k, v in obs_normalizer.items()}
        self.write()

    def write(self) -> Path:
        best = self.state
        payload = self.checkpoints.policy_payload(best["env_steps"], {"actor": best["actor"]},
                                                  best.get("obs_normalizer"))
        payload["evaluation"] = {"return_mean": best["return_mean"], "env_steps": best["env_steps"]}
        return self.checkpoints.save_best(payload)

    def load_state_dict(self, state: dict | None) -> None:
        self.state = state
        if state is None:  # a best.pt from after the checkpoint belongs to the abandoned continuation
            self.checkpoints.drop_best()
        else:
            self.write()
