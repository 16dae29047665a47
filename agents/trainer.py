"""The training loop, and how a run is built: fresh from a config, or resumed from its run directory."""

import contextlib
import dataclasses
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents import checkpoint
from agents.config import Config, check_layer, from_dict, merge, save_yaml, to_dict
from agents.cpu import configure_cpu
from agents.errors import UserError
from agents.evaluation import EVAL_SEED_OFFSET, run_episodes
from agents.logger import Logger
from agents.normalizer import ObsNormalizer
from agents.progress import Progress, format_duration
from agents.registry import AGENTS, Agent
from agents.replay_buffer import ReplayBuffer
from envs import make_env, make_vector_env, space_signature

KEEP_CHECKPOINTS = 2
# Fields a resumed run may change. None alters what the agent learns; a change of device or of --compile can
# change the last bits of the arithmetic, so only an unchanged one keeps the resume bit-exact.
RESUMABLE_FIELDS = ("total_steps", "device", "threads", "wandb", "log_every", "compile")


@dataclasses.dataclass
class Summary:
    env_steps: int
    wall_time: float
    eval_return_mean: float | None
    eval_return_std: float | None
    checkpoint: Path

    def __str__(self) -> str:
        rate = self.env_steps / max(self.wall_time, 1e-9)
        lines = [f"Trained to {self.env_steps:,} env steps in {format_duration(self.wall_time)} "
                 f"({rate:.0f} steps/s)."]
        if self.eval_return_mean is not None:
            lines.append(f"Final evaluation return: {self.eval_return_mean:.1f} +- {self.eval_return_std:.1f}.")
        lines.append(f"Policy saved to {self.checkpoint}")
        return "\n".join(lines)


class Diverged(UserError):
    """A loss or the evaluation return became NaN or infinite; the checkpoints written before are kept."""


class Interrupted(Exception):
    """Training stopped by Ctrl-C, after its checkpoint was written."""

    def __init__(self, checkpoint_path: Path):
        super().__init__(f"Interrupted; checkpoint saved to {checkpoint_path}. Continue with: "
                         f"python train.py --resume {checkpoint_path.parent.parent}")
        self.checkpoint_path = checkpoint_path


def _crossed(step: int, n: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (step - n, step]."""
    return every > 0 and step // every > (step - n) // every


class Trainer:
    def __init__(self, config: Config, envs: gym.vector.VectorEnv, eval_env: gym.Env, agent: Agent,
                 buffer: ReplayBuffer, logger: Logger, run_dir: Path, device: torch.device,
                 normalizer: ObsNormalizer | None = None):
        self.config, self.envs, self.eval_env, self.agent = config, envs, eval_env, agent
        self.buffer, self.logger, self.run_dir, self.device = buffer, logger, run_dir, device
        self.normalizer = normalizer  # the buffer keeps raw observations; the agent sees normalized ones
        n = config.num_envs
        self.act_dim = envs.single_action_space.shape[0]
        self.space_signature = space_signature(eval_env)
        self.env_steps, self.episodes = 0, 0
        self.rng = np.random.default_rng(config.seed)
        self.obs: np.ndarray | None = None  # (N, O), the observation each sub-env is in
        self.ep_return, self.ep_length = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.episode_seeds = np.zeros(n, dtype=np.int64)  # the seed each sub-env's current episode began from
        self.last_return = float("nan")
        self.last_eval: tuple[float, float] | None = None
        self._sums: dict[str, torch.Tensor] = {}
        self._updates = 0
        self._episode_stats: list[tuple[float, int]] = []
        self._time_env = self._time_update = 0.0
        self._stop_requested = False
        # Called after each evaluation with (env_steps, return mean, return std): how a sweep hears of progress.
        self.on_evaluation: list[Callable[[int, float, float], None]] = []

    # ---- the loop -----------------------------------------------------------------------------------

    def run(self) -> Summary:
        cfg, n = self.config, self.config.num_envs
        start = time.perf_counter()
        if self.obs is None:
            self.start_episodes(np.ones(n, dtype=bool))
        progress = Progress(cfg.total_steps, initial=self.env_steps)
        interval_start, interval_step = time.perf_counter(), self.env_steps
        with self._stop_on_sigint():
            while self.env_steps < cfg.total_steps:
                self.step()
                progress.advance(n)
                if _crossed(self.env_steps, n, cfg.log_every) or self.env_steps >= cfg.total_steps:
                    now = time.perf_counter()
                    self._log(sps=(self.env_steps - interval_step) / max(now - interval_start, 1e-9))
                    interval_start, interval_step = now, self.env_steps
                    progress.show(self._progress_stats())
                if _crossed(self.env_steps, n, cfg.eval_every) and self.env_steps < cfg.total_steps:
                    self.evaluate(cfg.eval_episodes)
                    progress.show(self._progress_stats())
                if _crossed(self.env_steps, n, cfg.video_every):
                    self.record_video()
                if _crossed(self.env_steps, n, cfg.checkpoint_every) and self.env_steps < cfg.total_steps:
                    self.save()
                if self._stop_requested and self.env_steps < cfg.total_steps:
                    progress.close()
                    raise Interrupted(self.save())
        progress.close()
        if cfg.eval_episodes > 0:
            self.evaluate(cfg.eval_episodes)
        path = self.save()
        mean, std = self.last_eval if self.last_eval else (None, None)
        return Summary(self.env_steps, time.perf_counter() - start, mean, std, path)

    def step(self) -> None:
        """One call of env.step on every sub-env, then `updates_per_step` gradient updates."""
        cfg, n = self.config, self.config.num_envs
        t0 = time.perf_counter()
        if self.env_steps < cfg.learning_starts:
            action = self.rng.uniform(-1.0, 1.0, (n, self.act_dim)).astype(np.float32)
        else:
            action = self.agent.act(self._agent_obs(self.obs)).cpu().numpy()
        next_obs, reward, terminated, truncated, _ = self.envs.step(action)
        if self.normalizer is not None:
            self.normalizer.update(torch.as_tensor(next_obs, dtype=torch.float32, device=self.device))
        # Autoreset is off: next_obs is the true next observation also where a time limit cut the episode,
        # so a truncated episode bootstraps from it and only `terminated` stops bootstrapping.
        self.buffer.add(self.obs, action, reward, next_obs, terminated)
        self.obs = next_obs
        self.env_steps += n
        self.ep_return += reward
        self.ep_length += 1
        done = terminated | truncated
        if done.any():
            for i in np.flatnonzero(done):
                self._episode_stats.append((float(self.ep_return[i]), int(self.ep_length[i])))
                self.last_return = float(self.ep_return[i])
            self.episodes += int(done.sum())
            self.start_episodes(done)
        t1 = time.perf_counter()
        self._time_env += t1 - t0
        if self.env_steps > cfg.learning_starts and len(self.buffer) >= cfg.batch_size:
            for _ in range(cfg.updates_per_step):
                batch = self.buffer.sample(cfg.batch_size)
                if self.normalizer is not None:
                    batch = batch._replace(obs=self.normalizer(batch.obs), next_obs=self.normalizer(batch.next_obs))
                self._accumulate(self.agent.update(batch))
            self._time_update += time.perf_counter() - t1

    def start_episodes(self, mask: np.ndarray) -> None:
        """Reset the sub-envs in `mask`, each from a new seed drawn from the run's generator."""
        seeds = self.rng.integers(2**31 - 1, size=len(mask))
        self.episode_seeds[mask] = seeds[mask]
        reset_obs, _ = self.envs.reset(seed=[int(s) if m else None for s, m in zip(seeds, mask)],
                                       options={"reset_mask": mask})
        self.obs = reset_obs if self.obs is None else np.where(mask[:, None], reset_obs, self.obs)
        self.ep_return[mask], self.ep_length[mask] = 0.0, 0

    # ---- pieces -------------------------------------------------------------------------------------

    def _agent_obs(self, obs: np.ndarray) -> torch.Tensor:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return obs_t if self.normalizer is None else self.normalizer(obs_t)

    def policy(self, deterministic: bool = True):
        def act(obs: np.ndarray) -> np.ndarray:
            return self.agent.act(self._agent_obs(obs), deterministic=deterministic).cpu().numpy()
        return act

    def evaluate(self, episodes: int) -> tuple[float, float]:
        returns, lengths, _ = run_episodes(self.policy(), self.eval_env, episodes,
                                           self.config.seed + EVAL_SEED_OFFSET)
        self.last_eval = (float(returns.mean()), float(returns.std()))
        self.logger.log_eval(self.env_steps, *self.last_eval, float(lengths.mean()))
        if not math.isfinite(self.last_eval[0]):
            raise Diverged(f"training diverged: the evaluation return at step {self.env_steps:,} is "
                           f"{self.last_eval[0]}.")
        for callback in self.on_evaluation:
            callback(self.env_steps, *self.last_eval)
        return self.last_eval

    def record_video(self) -> Path:
        """One deterministic evaluation episode, written to RUN_DIR/videos and logged to wandb."""
        env = make_env(self.config.env, render_mode="rgb_array")
        try:
            _, _, (path,) = run_episodes(self.policy(), env, 1, self.config.seed + EVAL_SEED_OFFSET,
                                         self.run_dir / "videos", name=f"step_{self.env_steps:09d}")
        finally:
            env.close()
        self.logger.log_video(path, self.env_steps)
        return path

    def _accumulate(self, info: dict[str, torch.Tensor]) -> None:
        # Summed on the device: no host sync until the log interval.
        for key, value in info.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value.clone()
        self._updates += 1

    def _log(self, sps: float) -> None:
        busy = max(self._time_env + self._time_update, 1e-9)
        metrics: dict[str, float] = {"time/sps": sps, "time/env_fraction": self._time_env / busy,
                                     "buffer/size": len(self.buffer), **self.agent.constants}
        if self._sums:
            # Averages over the interval's updates, and the gradient norms of its last update.
            means = {k: v / self._updates for k, v in self._sums.items()}
            means.update(self.agent.grad_norms())
            values = dict(zip(means, torch.stack(list(means.values())).tolist()))  # one transfer
            metrics.update({f"train/{k}": v for k, v in values.items()})
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad:
                self.logger.log(metrics, self.env_steps)
                more = f" (and {len(bad) - 1} more metrics)" if len(bad) > 1 else ""
                raise Diverged(f"training diverged: {bad[0]}{more} became {values[bad[0]]} by step "
                               f"{self.env_steps:,} (a smaller learning rate may help).")
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

    @contextlib.contextmanager
    def _stop_on_sigint(self):
        """Ctrl-C asks the loop to stop after the current step, and save; a second Ctrl-C stops at once."""
        def handle(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def close(self) -> None:
        self.logger.close()
        self.envs.close()
        self.eval_env.close()

    # ---- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {
            "env_steps": self.env_steps, "episodes": self.episodes, "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "ep_return": torch.from_numpy(self.ep_return.copy()),
            "ep_length": torch.from_numpy(self.ep_length.copy()),
            "episode_seeds": torch.from_numpy(self.episode_seeds.copy()),
            "last_eval": list(self.last_eval) if self.last_eval else None, "wandb_id": self.logger.run_id,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self) -> Path:
        payload = {
            "agent": self.agent.name, "env_id": self.config.env, "env_steps": self.env_steps,
            "config": to_dict(self.config), "spaces": self.space_signature,
            "agent_state": self.agent.state_dict(), "trainer_state": self.state_dict(),
        }
        if self.config.save_buffer:
            payload["buffer"] = self.buffer.state_dict()
        if self.normalizer is not None:
            payload["obs_normalizer"] = self.normalizer.state_dict()
        path = checkpoint.checkpoint_path(self.run_dir, self.env_steps)
        checkpoint.save_checkpoint(payload, path)
        checkpoint.prune_checkpoints(self.run_dir, KEEP_CHECKPOINTS)
        return path

    def load(self, payload: dict) -> None:
        """Continue from a checkpoint: agent, buffer, counters, RNG streams, and the episodes in flight."""
        self.agent.load_state_dict(payload["agent_state"])
        if self.normalizer is not None:
            self.normalizer.load_state_dict(payload["obs_normalizer"])
        state = payload["trainer_state"]
        self.env_steps, self.episodes = state["env_steps"], state["episodes"]
        self.rng.bit_generator.state = state["rng"]
        self.ep_return, self.ep_length = state["ep_return"].numpy().copy(), state["ep_length"].numpy().copy()
        self.episode_seeds = state["episode_seeds"].numpy().copy()
        self.last_eval = tuple(state["last_eval"]) if state["last_eval"] else None
        self.logger.forget_evaluations_after(self.env_steps)
        if "buffer" in payload:
            self.buffer.load_state_dict(payload["buffer"])
        self._rebuild_episodes()
        # Last, so that nothing above draws from the restored streams.
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def _rebuild_episodes(self) -> None:
        """Put each sub-env back into the state the checkpoint left it in: reset it from its episode's seed and
        replay the episode's actions from the replay buffer, checking every observation on the way. An episode
        that cannot be rebuilt (no buffer saved, an env that is not deterministic) starts anew instead."""
        n = self.config.num_envs
        sub_envs = getattr(self.envs, "envs", None)  # SyncVectorEnv's own envs
        # A full reset first, so that the vector env holds an observation for every sub-env (a later reset_mask
        # reset stacks them all); the replays below then move single sub-envs on from there.
        self.obs, _ = self.envs.reset(seed=[int(s) for s in self.episode_seeds])
        rebuilt = np.zeros(n, dtype=bool)
        for j in range(n):
            length = int(self.ep_length[j])
            if sub_envs is None or length * n > len(self.buffer):
                continue
            rows = (self.buffer.pos - n * (length - np.arange(length)) + j) % self.buffer.capacity
            obs_rows = self.buffer.obs[rows].cpu().numpy()
            actions = self.buffer.action[rows].cpu().numpy()
            expected = np.concatenate([obs_rows, self.buffer.next_obs[rows[-1:]].cpu().numpy()]) if length else obs_rows
            obs, _ = sub_envs[j].reset(seed=int(self.episode_seeds[j]))
            for t in range(length + 1):
                if t < len(expected) and not np.array_equal(np.asarray(obs, np.float32), expected[t]):
                    break
                if t < length:
                    obs, *_ = sub_envs[j].step(actions[t])
            else:
                self.obs[j], rebuilt[j] = obs, True
        if not rebuilt.all():
            self.start_episodes(~rebuilt)


# ---- building a run ------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for, but torch sees no CUDA device; use --device cpu or auto.")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name} was asked for, but torch sees {torch.cuda.device_count()} CUDA device(s).")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(config: Config, agent_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.env.replace('/', '-')}__{agent_name}__s{config.seed}__{stamp}"


def build_trainer(config: Config, resuming: bool = False, wandb_id: str | None = None) -> Trainer:
    """Everything a run needs, made from its config: device, seeds, envs, run directory, agent, buffer, logger."""
    device = resolve_device(config.device)
    if config.video_every:  # render without a display: pygame (classic control) and MuJoCo
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("MUJOCO_GL", "egl")
    configure_cpu(config.threads)
    seed_everything(config.seed)
    eval_env = make_env(config.env)  # first: a bad env id is refused here, before any subprocess starts
    envs = make_vector_env(config.env, config.num_envs, config.vector_mode)
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config, config.agent)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} is a file; give a folder for the run.")
    if not resuming and any((run_dir / checkpoint.CHECKPOINT_DIR).glob("*.pt")):
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick another "
                        "--run-dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / "config.yaml")
    agent = AGENTS[config.agent](obs_dim, act_dim, config.agent_config, device, precision=config.precision,
                                 compile=config.compile)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim, device, seed=config.seed)
    logger = Logger(run_dir, config, config.agent, run_id=wandb_id)
    normalizer = ObsNormalizer(obs_dim).to(device) if config.normalize_obs else None
    return Trainer(config, envs, eval_env, agent, buffer, logger, run_dir, device, normalizer)


def _leaf_keys(overrides: dict) -> list[str]:
    return [k for key, value in overrides.items() for k in (_leaf_keys(value) if isinstance(value, dict) else [key])]


def resume_trainer(run_dir: str | Path, overrides: dict) -> Trainer:
    """The run in `run_dir`, restored from its latest checkpoint; `overrides` may change RESUMABLE_FIELDS."""
    if not Path(run_dir).is_dir():
        raise UserError(f"--resume takes a run directory, and {run_dir} is not one.")
    payload = checkpoint.load_checkpoint(run_dir)
    refused = sorted(set(_leaf_keys(overrides)) - set(RESUMABLE_FIELDS))
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_FIELDS)
        raise UserError(f"{flags} cannot change in a resumed run; with --resume only {allowed} may be given.")
    check_layer(overrides, "the command line")
    if payload.get("agent") not in AGENTS or "trainer_state" not in payload:
        raise UserError(f"{run_dir} holds a checkpoint of agent '{payload.get('agent')}' without training state; "
                        "it can be evaluated but not resumed.")
    config = from_dict(merge(payload["config"], {**overrides, "run_dir": str(run_dir)}), "the checkpoint")
    if config.total_steps <= payload["env_steps"]:
        raise UserError(f"{run_dir} has already trained {payload['env_steps']:,} of its {config.total_steps:,} "
                        "env steps; give a larger --total-steps to train on.")
    trainer = build_trainer(config, resuming=True, wandb_id=payload["trainer_state"].get("wandb_id"))
    trainer.load(payload)
    return trainer


def train(config: Config, announce=None) -> Summary:
    """Build the run and train it; `announce()` is called once the run is built (so after any bad input)."""
    trainer = build_trainer(config)
    if announce is not None:
        announce()
    try:
        return trainer.run()
    finally:
        trainer.close()


def resume(run_dir: str | Path, overrides: dict) -> Summary:
    trainer = resume_trainer(run_dir, overrides)
    try:
        return trainer.run()
    finally:
        trainer.close()
