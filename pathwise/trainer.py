"""The training loop: act, step, store, update; and now and then log, evaluate, record or save."""

import dataclasses
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pathwise import checkpoint
from pathwise.agents.registry import Agent
from pathwise.agents.scaffold import optimizers, reset_
from pathwise.collector import Collector
from pathwise.config import Config, to_dict
from pathwise.errors import UserError
from pathwise.evaluation import Evaluator
from pathwise.logger import Logger
from pathwise.metrics import IntervalMetrics
from pathwise.normalizer import ObsNormalizer
from pathwise.progress import Progress, format_duration
from pathwise.replay_buffer import ReplayBuffer
from pathwise.signals import StopRequest

KEEP_CHECKPOINTS = 2


@dataclasses.dataclass
class Summary:
    env_steps: int  # the run's, over all its sessions
    session_steps: int  # this session's (a resumed run's session began at its checkpoint)
    session_time: float  # seconds
    run_time: float  # seconds of training over all the run's sessions
    eval_return_mean: float | None
    eval_return_std: float | None
    checkpoint: Path
    best: tuple[int, float, Path] | None = None  # (env steps, return mean, checkpoint) of the best evaluation

    @property
    def steps_per_second(self) -> float:
        """This session's speed: its env steps over its time."""
        return self.session_steps / max(self.session_time, 1e-9)

    def __str__(self) -> str:
        took = f"in {format_duration(self.session_time)} ({self.steps_per_second:.0f} steps/s)"
        if self.session_steps == self.env_steps:
            lines = [f"Trained to {self.env_steps:,} env steps {took}."]
        else:
            lines = [f"Trained to {self.env_steps:,} env steps: {self.session_steps:,} in this session {took}; "
                     f"the whole run took {format_duration(self.run_time)} of training."]
        if self.eval_return_mean is not None:
            lines.append(f"Final evaluation return: {self.eval_return_mean:.1f} +- {self.eval_return_std:.1f}.")
        lines.append(f"Policy saved to {self.checkpoint}")
        if self.best is not None:
            lines.append(f"Best evaluation: {self.best[1]:.1f} at step {self.best[0]:,}; that policy is "
                         f"{self.best[2]}")
        return "\n".join(lines)


class Diverged(UserError):
    """A loss or the evaluation return became NaN or infinite; the checkpoints written before are kept."""


class Interrupted(Exception):
    """Training stopped by a signal (Ctrl-C or SIGTERM): after writing its checkpoint, or, at a second signal, at
    once, keeping the checkpoints written before."""

    def __init__(self, run_dir: Path, signum: int = signal.SIGINT, saved: Path | None = None):
        if saved is not None:
            what = f"Interrupted; checkpoint saved to {saved}."
        else:
            what = ("Stopped at once by a second signal; the checkpoints written before are kept (a checkpoint cut "
                    "off while being written is never the one read).")
        super().__init__(f"{what} Continue with: python train.py --resume {run_dir}")
        self.exit_code = 128 + int(signum)


def _crossed(step: int, n: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (step - n, step]."""
    return every > 0 and step // every > (step - n) // every


class Trainer:
    def __init__(self, config: Config, collector: Collector, agent: Agent, buffer: ReplayBuffer,
                 evaluator: Evaluator, logger: Logger, run_dir: Path, device: torch.device,
                 space_signature: dict, normalizer: ObsNormalizer | None = None):
        self.config, self.collector, self.agent, self.buffer = config, collector, agent, buffer
        self.evaluator, self.logger, self.run_dir, self.device = evaluator, logger, run_dir, device
        self.space_signature = space_signature
        self.normalizer = normalizer  # the buffer keeps raw observations; the agent sees normalized ones
        self.env_steps = 0
        self.run_time = 0.0  # seconds of training in the run's earlier sessions
        self._session_start: float | None = None
        # The best evaluation so far: env_steps, return_mean, and the policy then (actor and normalizer states,
        # on the CPU). Kept in every checkpoint, so that a run resumed from an earlier one rewrites best.pt as
        # its own timeline had it, not as the abandoned one left it.
        self.best: dict | None = None
        self.last_return = float("nan")
        self.metrics = IntervalMetrics()
        self.stop = StopRequest()
        # Called after each evaluation with (env_steps, return mean, return std): how a sweep hears of progress.
        self.on_evaluation: list[Callable[[int, float, float], None]] = []
        self.on_log: list[Callable[[], None]] = []  # called at each log interval (the threads looked at again)
        self.resources: list = []  # closed with the trainer (the run directory's lock)
        self.speed = None  # what the run does for speed (pathwise.speed.Plan), kept in its checkpoints
        self.update_while_stepping = device.type == "cuda"  # see step()
        # Each optimizer group's learning rate as configured, which lr_final_fraction scales (by position: loading
        # an optimizer's state replaces its group dicts).
        self.optimizers = optimizers(agent)
        self.base_lrs = [[float(group["lr"]) for group in o.param_groups] for o in self.optimizers]

    # ---- the loop -----------------------------------------------------------------------------------

    def run(self) -> Summary:
        self._session_start, start_step = time.perf_counter(), self.env_steps
        self.collector.start()
        progress = Progress(self.config.total_steps, initial=self.env_steps,
                            learning_starts=self.config.learning_starts)
        with self.stop.installed():
            try:
                path = self._loop(progress)
            except KeyboardInterrupt:  # the second signal
                progress.close()
                raise Interrupted(self.run_dir, self.stop.signum or signal.SIGINT) from None
        mean, std = self.evaluator.last or (None, None)
        session = time.perf_counter() - self._session_start
        best = None
        if self.best:
            best = (self.best["env_steps"], self.best["return_mean"], checkpoint.best_path(self.run_dir))
        return Summary(self.env_steps, self.env_steps - start_step, session, self.run_time + session, mean, std,
                       path, best)

    def _loop(self, progress: Progress) -> Path:
        """Train to total_steps, then the final evaluation and checkpoint; its path."""
        cfg, n = self.config, self.config.num_envs
        interval_start, interval_step = time.perf_counter(), self.env_steps
        while self.env_steps < cfg.total_steps:
            self.step()
            progress.advance(n)
            evaluate = _crossed(self.env_steps, n, cfg.eval_every) and self.env_steps < cfg.total_steps
            if _crossed(self.env_steps, n, cfg.log_every) or self.env_steps >= cfg.total_steps:
                now = time.perf_counter()
                self.log(sps=(self.env_steps - interval_step) / max(now - interval_start, 1e-9))
                interval_start, interval_step = now, self.env_steps
                if not evaluate:  # one line per step: an evaluation at this step shows it
                    progress.show(self._progress_stats())
            if evaluate:
                self.evaluate()
                progress.show(self._progress_stats())
            if _crossed(self.env_steps, n, cfg.video_every):
                self.evaluator.record_video(self.policy(), self.env_steps)
            saved = None
            if _crossed(self.env_steps, n, cfg.checkpoint_every) and self.env_steps < cfg.total_steps:
                saved = self.save()
            if self.stop and self.env_steps < cfg.total_steps:
                progress.close()
                raise Interrupted(self.run_dir, self.stop.signum, saved=saved or self.save())
        progress.close()
        if cfg.eval_episodes > 0:
            self.evaluate()
        return self.save()

    def step(self) -> None:
        """One call of env.step on every sub-env, and `updates_per_step` gradient updates.

        On a CPU the updates come after the env step, on batches that may hold its transitions. On a GPU they are
        launched before it, on batches of the transitions before it, and the GPU runs them while the CPU steps
        the envs: the next action waits for them, so the policy acts as updated, and no step is stored later."""
        cfg, n = self.config, self.config.num_envs
        t0, updating = time.perf_counter(), 0.0  # the step's start; seconds of it spent updating
        if self.env_steps < cfg.learning_starts:
            action = self.collector.random_actions()
        else:
            action = self.agent.act(self._agent_obs(self.collector.obs)).cpu().numpy()
        after = self.env_steps + n  # env steps once this step is done
        if _crossed(after, n, cfg.reset_every) and after < cfg.total_steps:
            self.reset_networks()
        if self.update_while_stepping and self._may_update(after):
            updating += self.update(after)
        transition, finished = self.collector.step(action)
        if self.normalizer is not None:
            self.normalizer.update(torch.as_tensor(transition[3], dtype=torch.float32, device=self.device))
        self.buffer.add(*transition)
        self.env_steps = after
        if finished:
            self.metrics.episodes += finished
            self.last_return = finished[-1][0]
        if not self.update_while_stepping and self._may_update(after):
            updating += self.update(after)
        self.metrics.time_env += time.perf_counter() - t0 - updating

    def _may_update(self, env_steps: int) -> bool:
        return env_steps > self.config.learning_starts and len(self.buffer) >= self.config.batch_size

    def update(self, env_steps: int) -> float:
        """The step's gradient updates, at `env_steps` (the count once the step is done). Returns the seconds they
        took (to launch, on a GPU)."""
        cfg = self.config
        t0 = time.perf_counter()
        if cfg.lr_final_fraction < 1.0:
            self.anneal_learning_rates(env_steps)
        for _ in range(cfg.updates_per_step):
            batch = self.buffer.sample(cfg.batch_size)
            if self.normalizer is not None:
                batch = batch._replace(obs=self.normalizer(batch.obs), next_obs=self.normalizer(batch.next_obs))
            self.metrics.add_update(self.agent.update(batch))
        took = time.perf_counter() - t0
        self.metrics.time_update += took
        return took

    # ---- now and then -------------------------------------------------------------------------------

    def anneal_learning_rates(self, env_steps: int) -> None:
        """lr_final_fraction: each learning rate at its configured value at learning_starts, falling linearly
        to lr_final_fraction of it at total_steps. A function of env_steps alone, so a resumed run has the same."""
        cfg = self.config
        progress = min(1.0, (env_steps - cfg.learning_starts) / max(1, cfg.total_steps - cfg.learning_starts))
        scale = 1.0 - (1.0 - cfg.lr_final_fraction) * progress
        for optimizer, base_lrs in zip(self.optimizers, self.base_lrs):
            for group, lr in zip(optimizer.param_groups, base_lrs):
                if isinstance(group["lr"], torch.Tensor):  # a CUDA graph's: it reads this tensor
                    group["lr"].fill_(lr * scale)
                else:
                    group["lr"] = lr * scale

    def reset_networks(self) -> None:
        """A reset (`reset_every`): the agent's networks towards a newly initialized agent's, drawn from the run's
        torch stream, so a resumed run resets to the same values."""
        fresh = self.config.agent.make_agent(self.buffer.obs.shape[1], self.buffer.action.shape[1], self.device)
        reset_(self.agent, fresh, self.config.reset_keep)

    def _agent_obs(self, obs: np.ndarray) -> torch.Tensor:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return obs_t if self.normalizer is None else self.normalizer(obs_t)

    def policy(self, deterministic: bool = True):
        """The agent as a function of NumPy observations (B, O) -> actions (B, A) in [-1, 1]."""
        def act(obs: np.ndarray) -> np.ndarray:
            return self.agent.act(self._agent_obs(obs), deterministic=deterministic).cpu().numpy()
        return act

    def evaluate(self) -> tuple[float, float]:
        result = self.evaluator.evaluate(self.policy(), self.config.eval_episodes, self.env_steps)
        if not self.evaluator.finite():
            raise Diverged(f"training diverged: the evaluation return at step {self.env_steps:,} is {result[0]}.")
        if self.best is None or result[0] > self.best["return_mean"]:
            self.best = {"env_steps": self.env_steps, "return_mean": result[0],
                         "actor": {k: v.detach().cpu().clone() for k, v in self.agent.actor.state_dict().items()}}
            if self.normalizer is not None:
                self.best["obs_normalizer"] = {k: v.cpu().clone() for k, v in self.normalizer.state_dict().items()}
            self.save_best()
        for callback in self.on_evaluation:
            callback(self.env_steps, *result)
        return result

    def log(self, sps: float) -> None:
        metrics, bad = self.metrics.collect(self.agent.grad_norms() if self.metrics.updates else {})
        metrics.update({"time/sps": sps, "buffer/size": len(self.buffer), **self.agent.constants})
        self.logger.log(metrics, self.env_steps)
        for callback in self.on_log:
            callback()
        if bad:
            more = f" (and {len(bad) - 1} more metrics)" if len(bad) > 1 else ""
            raise Diverged(f"training diverged: {bad[0]}{more} became {metrics['train/' + bad[0]]} by step "
                           f"{self.env_steps:,} (a smaller learning rate may help).")

    def _progress_stats(self) -> dict[str, str]:
        stats = {"return": f"{self.last_return:.1f}"}
        if self.evaluator.last is not None:
            stats["eval"] = f"{self.evaluator.last[0]:.1f}"
        return stats

    def close(self) -> None:
        self.logger.close()
        self.collector.envs.close()
        self.evaluator.close()
        for resource in self.resources:
            resource.close()

    # ---- checkpoints: each part's state written by its owner ----------------------------------------

    def state_dict(self) -> dict:
        session = time.perf_counter() - self._session_start if self._session_start is not None else 0.0
        state = {"env_steps": self.env_steps, "torch_rng": torch.get_rng_state(),
                 "last_eval": list(self.evaluator.last) if self.evaluator.last else None,
                 "best": self.best, "run_time": self.run_time + session,
                 "wandb_id": self.logger.run_id}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _policy_payload(self, env_steps: int, agent_state: dict, obs_normalizer: dict | None) -> dict:
        payload = {"agent": self.config.agent.name, "env_id": self.config.env, "env_steps": env_steps,
                   "config": to_dict(self.config), "spaces": self.space_signature, "agent_state": agent_state}
        if obs_normalizer is not None:
            payload["obs_normalizer"] = obs_normalizer
        return payload

    def save(self) -> Path:
        normalizer = self.normalizer.state_dict() if self.normalizer is not None else None
        payload = {**self._policy_payload(self.env_steps, self.agent.state_dict(), normalizer),
                   "collector": self.collector.state_dict(), "trainer": self.state_dict()}
        if self.config.save_buffer:
            payload["buffer"] = self.buffer.state_dict()
        if self.speed is not None:
            payload["speed"] = self.speed.as_dict()
        path = checkpoint.checkpoint_path(self.run_dir, self.env_steps)
        checkpoint.save_checkpoint(payload, path)
        checkpoint.prune_checkpoints(self.run_dir, KEEP_CHECKPOINTS)
        return path

    def save_best(self) -> Path:
        """The policy of the best evaluation so far, beside the latest checkpoints (the actor, and the
        observation normalization it saw): what `load_policy(RUN, which="best")` loads."""
        best = self.best
        payload = self._policy_payload(best["env_steps"], {"actor": best["actor"]}, best.get("obs_normalizer"))
        payload["evaluation"] = {"return_mean": best["return_mean"], "env_steps": best["env_steps"]}
        path = checkpoint.best_path(self.run_dir)
        checkpoint.save_checkpoint(payload, path)
        return path

    def load(self, payload: dict) -> None:
        """Continue from a checkpoint: agent, buffer, counters, RNG streams, and the episodes in flight."""
        self.agent.load_state_dict(payload["agent_state"])
        if self.normalizer is not None:
            self.normalizer.load_state_dict(payload["obs_normalizer"])
        state = payload["trainer"]
        self.env_steps, self.run_time = state["env_steps"], state["run_time"]
        self.best = state["best"]
        if self.best is not None:
            self.save_best()
        else:  # a best.pt from after this checkpoint belongs to the abandoned continuation
            checkpoint.best_path(self.run_dir).unlink(missing_ok=True)
        self.evaluator.last = tuple(state["last_eval"]) if state["last_eval"] else None
        self.logger.forget_evaluations_after(self.env_steps)
        if "buffer" in payload:
            self.buffer.load_state_dict(payload["buffer"])
        self.collector.load_state_dict(payload["collector"])
        # Last, so that nothing above draws from the restored streams.
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
