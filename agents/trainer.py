"""The training loop, and `train(config)`, which builds what the loop needs and runs it."""

import dataclasses
import random
import time
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents import checkpoint
from agents.config import Config, save_yaml, to_dict
from agents.errors import UserError
from agents.evaluation import EVAL_SEED_OFFSET, run_episodes
from agents.logger import Logger
from agents.progress import Progress, format_duration
from agents.replay_buffer import ReplayBuffer
from agents.sac import SAC
from envs import make_env, make_vector_env, space_signature

KEEP_CHECKPOINTS = 3


@dataclasses.dataclass
class Summary:
    env_steps: int
    wall_time: float
    eval_return_mean: float | None
    eval_return_std: float | None
    checkpoint: Path

    def __str__(self) -> str:
        rate = self.env_steps / max(self.wall_time, 1e-9)
        lines = [f"Trained {self.env_steps:,} env steps in {format_duration(self.wall_time)} ({rate:.0f} steps/s)."]
        if self.eval_return_mean is not None:
            lines.append(f"Final evaluation return: {self.eval_return_mean:.1f} +- {self.eval_return_std:.1f}.")
        lines.append(f"Policy saved to {self.checkpoint}")
        return "\n".join(lines)


class Interrupted(Exception):
    """Training stopped by Ctrl-C after its checkpoint was written."""

    def __init__(self, checkpoint_path: Path):
        super().__init__(f"interrupted; checkpoint saved to {checkpoint_path}")
        self.checkpoint_path = checkpoint_path


def _crossed(step: int, n: int, every: int) -> bool:
    """Whether the interval boundary `every` lies in (step - n, step]."""
    return every > 0 and step // every > (step - n) // every


class Trainer:
    def __init__(self, config: Config, envs: gym.vector.VectorEnv, eval_env: gym.Env, agent: SAC,
                 buffer: ReplayBuffer, logger: Logger, run_dir: Path, device: torch.device):
        self.config, self.envs, self.eval_env, self.agent = config, envs, eval_env, agent
        self.buffer, self.logger, self.run_dir, self.device = buffer, logger, run_dir, device
        self.env_steps, self.episodes = 0, 0
        self.act_dim = envs.single_action_space.shape[0]
        self.rng = np.random.default_rng(config.seed)
        self.space_signature = space_signature(eval_env)
        self.last_return = float("nan")
        self.last_eval: tuple[float, float] | None = None
        self._sums: dict[str, torch.Tensor] = {}
        self._updates = 0
        self._episode_stats: list[tuple[float, int]] = []
        self._time_env = self._time_update = 0.0

    # ---- the loop -----------------------------------------------------------------------------------

    def run(self) -> Summary:
        cfg, n = self.config, self.config.num_envs
        start = time.perf_counter()
        progress = Progress(cfg.total_steps, initial=self.env_steps)
        obs, _ = self.envs.reset(seed=cfg.seed)
        ep_return, ep_length = np.zeros(n), np.zeros(n, dtype=np.int64)
        interval_start, interval_step = time.perf_counter(), self.env_steps
        try:
            while self.env_steps < cfg.total_steps:
                t0 = time.perf_counter()
                if self.env_steps < cfg.learning_starts:
                    action = self.rng.uniform(-1.0, 1.0, (n, self.act_dim)).astype(np.float32)
                else:
                    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
                    action = self.agent.act(obs_t).cpu().numpy()
                next_obs, reward, terminated, truncated, info = self.envs.step(action)
                # Autoreset is SAME_STEP: an ended episode's true last observation is in info["final_obs"],
                # and next_obs already belongs to the next episode. A truncated episode bootstraps from it.
                real_next_obs = next_obs
                if "_final_obs" in info:
                    real_next_obs = next_obs.copy()
                    for i in np.flatnonzero(info["_final_obs"]):
                        real_next_obs[i] = info["final_obs"][i]
                self.buffer.add(obs, action, reward, real_next_obs, terminated)
                obs = next_obs
                self.env_steps += n
                ep_return += reward
                ep_length += 1
                for i in np.flatnonzero(terminated | truncated):
                    self._episode_stats.append((float(ep_return[i]), int(ep_length[i])))
                    self.last_return = float(ep_return[i])
                    self.episodes += 1
                    ep_return[i], ep_length[i] = 0.0, 0
                t1 = time.perf_counter()
                self._time_env += t1 - t0

                if self.env_steps > cfg.learning_starts:
                    for _ in range(cfg.updates_per_step):
                        self._accumulate(self.agent.update(self.buffer.sample(cfg.batch_size)))
                    self._time_update += time.perf_counter() - t1
                progress.advance(n)

                if _crossed(self.env_steps, n, cfg.log_every) or self.env_steps >= cfg.total_steps:
                    now = time.perf_counter()
                    self._log(sps=(self.env_steps - interval_step) / max(now - interval_start, 1e-9))
                    interval_start, interval_step = now, self.env_steps
                    progress.show(self._progress_stats())
                if _crossed(self.env_steps, n, cfg.eval_every) and self.env_steps < cfg.total_steps:
                    self.evaluate(cfg.eval_episodes)
                    progress.show(self._progress_stats())
                if _crossed(self.env_steps, n, cfg.checkpoint_every) and self.env_steps < cfg.total_steps:
                    self.save()
        except KeyboardInterrupt:
            progress.close()
            raise Interrupted(self.save()) from None
        progress.close()
        if cfg.eval_episodes > 0:
            self.evaluate(cfg.eval_episodes)
        path = self.save()
        self.logger.close()
        mean, std = self.last_eval if self.last_eval else (None, None)
        return Summary(self.env_steps, time.perf_counter() - start, mean, std, path)

    def close(self) -> None:
        self.logger.close()
        self.envs.close()
        self.eval_env.close()

    # ---- pieces -------------------------------------------------------------------------------------

    def policy(self, deterministic: bool = True):
        def act(obs: np.ndarray) -> np.ndarray:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            return self.agent.act(obs_t, deterministic=deterministic).cpu().numpy()
        return act

    def evaluate(self, episodes: int) -> tuple[float, float]:
        returns, lengths = run_episodes(self.policy(), self.eval_env, episodes, self.config.seed + EVAL_SEED_OFFSET)
        self.last_eval = (float(returns.mean()), float(returns.std()))
        self.logger.log_eval(self.env_steps, *self.last_eval, float(lengths.mean()))
        return self.last_eval

    def _accumulate(self, info: dict[str, torch.Tensor]) -> None:
        # Summed on the device: no host sync until the log interval.
        for key, value in info.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value.clone()
        self._updates += 1

    def _log(self, sps: float) -> None:
        metrics: dict[str, float] = {"time/sps": sps, "buffer/size": len(self.buffer),
                                     "time/env_fraction": self._time_env / max(self._time_env + self._time_update,
                                                                               1e-9),
                                     "train/target_entropy": self.agent.target_entropy}
        if self._sums:
            keys = list(self._sums)
            values = (torch.stack([self._sums[k] for k in keys]) / self._updates).tolist()  # one transfer
            metrics.update({f"train/{k}": v for k, v in zip(keys, values)})
        if self._episode_stats:
            returns, lengths = zip(*self._episode_stats)
            metrics["train/episode_return"] = float(np.mean(returns))
            metrics["train/episode_length"] = float(np.mean(lengths))
        self.logger.log(metrics, self.env_steps)
        self._sums, self._updates, self._episode_stats = {}, 0, []
        self._time_env = self._time_update = 0.0

    def _progress_stats(self) -> dict[str, str]:
        stats = {"return": f"{self.last_return:.1f}"}
        if self.last_eval is not None:
            stats["eval"] = f"{self.last_eval[0]:.1f}"
        return stats

    def save(self) -> Path:
        payload = {
            "agent": self.agent.name, "env_id": self.config.env, "env_steps": self.env_steps,
            "episodes": self.episodes, "config": to_dict(self.config), "spaces": self.space_signature,
            "agent_state": self.agent.state_dict(),
        }
        path = checkpoint.checkpoint_path(self.run_dir, self.env_steps)
        checkpoint.save_checkpoint(payload, path)
        checkpoint.prune_checkpoints(self.run_dir, KEEP_CHECKPOINTS)
        return path


# ---- building a run ------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for, but torch sees no CUDA device; use --device cpu or auto.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(config: Config, agent_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.env.replace('/', '-')}__{agent_name}__s{config.seed}__{stamp}"


def build_trainer(config: Config) -> Trainer:
    """Everything a run needs, made from its config: device, seeds, envs, run directory, agent, buffer, logger."""
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    envs = make_vector_env(config.env, config.num_envs)
    eval_env = make_env(config.env)
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config, SAC.name)
    if any((run_dir / checkpoint.CHECKPOINT_DIR).glob("*.pt")):
        raise UserError(f"{run_dir} already holds a run; resume it with --resume {run_dir}, or pick another "
                        "--run-dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / "config.yaml")
    agent = SAC(obs_dim, act_dim, config.sac, device)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim, device, seed=config.seed)
    logger = Logger(run_dir, config, SAC.name)
    return Trainer(config, envs, eval_env, agent, buffer, logger, run_dir, device)


def train(config: Config) -> Summary:
    trainer = build_trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()
