"""The training loop: act, step, store, update; and now and then log, evaluate, record or save."""

import dataclasses
import math
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pathwise.agents.registry import Agent
from pathwise.agents.scaffold import optimizers, reset_
from pathwise.batched_collector import BatchedCollector
from pathwise.checkpoint import Checkpointer, CheckpointNotWritten
from pathwise.collector import Collector
from pathwise.config import Config
from pathwise.errors import EnvFault, NonFinite, UserError
from pathwise.evaluation import BestPolicy, Evaluator, PolicyAverage
from pathwise.logger import Logger
from pathwise.metrics import IntervalMetrics
from pathwise.normalizer import ObsNormalizer
from pathwise.progress import Progress, format_duration
from pathwise.replay_buffer import ReplayBuffer
from pathwise.schedule import LearningRates, discount
from pathwise.signals import StopRequest


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
    eval_success_rate: float | None = None  # of the final evaluation, where the env reports success

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
            success = "" if self.eval_success_rate is None else f", success rate {self.eval_success_rate:.2f}"
            lines.append(f"Final evaluation return: {self.eval_return_mean:.1f} +- {self.eval_return_std:.1f}"
                         f"{success}.")
        lines.append(f"Policy saved to {self.checkpoint}")
        if self.best is not None:
            lines.append(f"Best evaluation: {self.best[1]:.1f} at step {self.best[0]:,}; that policy is "
                         f"{self.best[2]}")
        return "\n".join(lines)


class Diverged(UserError):
    """A loss or the evaluation return became NaN or infinite; the checkpoints written before are kept."""


class EnvStopped(UserError):
    """The environment failed (an EnvFault) at a step; the run was saved at the step before."""


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
    """Runs the loop. Every part it drives owns its state and its faults: the collector the envs, the buffer the
    transitions, the agent its update, the evaluator and the best policy the evaluations, the checkpointer the files."""

    def __init__(self, config: Config, collector: Collector | BatchedCollector, agent: Agent, buffer: ReplayBuffer,
                 evaluator: Evaluator, logger: Logger, checkpoints: Checkpointer, device: torch.device,
                 normalizer: ObsNormalizer | None = None):
        self.config, self.collector, self.agent, self.buffer = config, collector, agent, buffer
        self.evaluator, self.logger, self.checkpoints, self.device = evaluator, logger, checkpoints, device
        self.run_dir = checkpoints.run_dir
        self.normalizer = normalizer  # the buffer keeps raw observations; the agent sees normalized ones
        self.best = BestPolicy(checkpoints)
        # The policy evaluated and saved: a running average of the actor (policy_average), or the actor itself.
        self.average = PolicyAverage(agent.actor, config.policy_average) if config.policy_average else None
        self.learning_rates = LearningRates(optimizers(agent), config)
        self.env_steps = 0
        self.run_time = 0.0  # seconds of training in the run's earlier sessions
        self._session_start: float | None = None
        self.last_return = float("nan")
        self.success_rate: float | None = None  # of the episodes of the last log interval, where the env says
        self.dropped_episodes = 0  # over the run (--on-nonfinite drop)
        self.metrics = IntervalMetrics()
        self.stop = StopRequest()
        # Called after each evaluation with (env_steps, return mean, return std): how a sweep hears of progress.
        self.on_evaluation: list[Callable[[int, float, float], None]] = []
        self.on_log: list[Callable[[], None]] = []  # called at each log interval (the threads looked at again)
        self.resources: list = []  # closed with the trainer (the run directory's lock)
        self.speed = None  # what the run does for speed (pathwise.speed.Plan), kept in its checkpoints
        self.update_while_stepping = device.type == "cuda"  # see step()

    # ---- the loop -----------------------------------------------------------------------------------

    def run(self) -> Summary:
        self._session_start, start_step = time.perf_counter(), self.env_steps
        progress = Progress(self.config.total_steps, initial=self.env_steps,
                            learning_starts=self.config.learning_starts)
        with self.stop.installed():
            try:
                self.collector.start()
                path = self._loop(progress)
            except KeyboardInterrupt:  # the second signal
                progress.close()
                raise Interrupted(self.run_dir, self.stop.signum or signal.SIGINT) from None
            except EnvFault as fault:
                progress.close()
                raise self._stopped_by(fault) from None
        mean, std = self.evaluator.last or (None, None)
        session = time.perf_counter() - self._session_start
        best = None
        if self.best.state:
            best = (self.best.state["env_steps"], self.best.state["return_mean"], self.checkpoints.best)
        return Summary(self.env_steps, self.env_steps - start_step, session, self.run_time + session, mean, std,
                       path, best, self.evaluator.last_success)

    def _stopped_by(self, fault: EnvFault) -> Exception:
        """What ends a run whose env failed: nothing of the failed step was stored, so the step before is saved,
        unless the actor's weights are no longer finite (its actions drove the env to NaN: a divergence, and the
        earlier checkpoints are the ones to keep) or no step was made yet."""
        if not all(torch.isfinite(p).all() for p in self.agent.actor.parameters()):
            return Diverged(f"training diverged: the actor's weights became non-finite by step {self.env_steps:,}, "
                            f"and the env then reported: {fault} (a smaller learning rate may help).")
        if self.collector.obs is None:
            return EnvStopped(f"{fault}, before the run's first step; nothing was trained or saved.")
        path = self.save()
        if self.env_steps >= self.config.total_steps:
            return EnvStopped(f"{fault}; the run had trained all its steps and was saved to {path}.")
        drop = " (or add --on-nonfinite drop to drop such episodes)" if isinstance(fault, NonFinite) and \
            "evaluation" not in str(fault) else ""
        kept = self._keep_traceback(fault)
        return EnvStopped(f"{fault}; the run was saved at step {self.env_steps:,} to {path}{kept}. Continue with: "
                          f"python train.py --resume {self.run_dir}{drop}")

    def _keep_traceback(self, fault: EnvFault) -> str:
        """The env's own traceback, where it raised in this process, written beside the run: where it is."""
        cause = fault
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, EnvFault):  # a NaN, or an error re-raised from an async worker: no traceback here
            return ""
        path = self.run_dir / "env_error.txt"
        path.write_text("".join(traceback.format_exception(cause)))
        return f" (the env's traceback: {path})"

    def _loop(self, progress: Progress) -> Path:
        """Train to total_steps, then the final evaluation and checkpoint; its path."""
        cfg = self.config
        n = cfg.env_steps_per_call
        interval_start, interval_step = time.perf_counter(), self.env_steps
        while self.env_steps < cfg.total_steps:
            self.step()
            progress.advance(n)
            evaluate = (cfg.eval_episodes > 0 and _crossed(self.env_steps, n, cfg.eval_every)
                        and self.env_steps < cfg.total_steps)
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
                saved = self.save(or_warn=True)
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
        cfg = self.config
        n = cfg.env_steps_per_call
        t0, updating = time.perf_counter(), 0.0  # the step's start; seconds of it spent updating
        if self.env_steps < cfg.learning_starts:
            action = self.collector.random_actions()
        else:
            action = self.collector.from_agent(self.agent.act(self._agent_obs(self.collector.obs)))
        after = self.env_steps + n  # env steps once this step is done
        if _crossed(after, n, cfg.reset_every) and after < cfg.total_steps:
            self.reset_networks()
        if self.update_while_stepping and self._may_update(after):
            updating += self.update(after)
        try:
            transition, finished, dropped = self.collector.step(action)
        except EnvFault as fault:
            raise type(fault)(f"{fault} at step {after:,}") from fault
        kept = np.delete(transition[3], [i for i, *_ in dropped], axis=0) if dropped else transition[3]
        if self.normalizer is not None and len(kept):
            self.normalizer.update(torch.as_tensor(kept, dtype=torch.float32, device=self.device))
        self.buffer.add(*transition)
        self.env_steps = after
        if finished:
            self.metrics.episodes += finished
            self.last_return = finished[-1][0]

        for sub_env, transitions, what in dropped:
            self.buffer.drop(sub_env, transitions)
            self.dropped_episodes += 1
            print(f"note: environment '{self.config.env}' returned a non-finite {what} at step {after:,}; its "
                  f"episode ({transitions} transitions) was dropped.", file=sys.stderr, flush=True)
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
        self.learning_rates.at(env_steps)
        self.buffer.set_gamma(discount(cfg, env_steps))
        for _ in range(cfg.updates_per_step):
            batch = self.buffer.sample(cfg.batch_size)
            if self.normalizer is not None:
                batch = batch._replace(obs=self.normalizer(batch.obs), next_obs=self.normalizer(batch.next_obs))
            self.metrics.add_update(self.agent.update(batch))
        if self.average is not None:
            self.average.update(self.agent.actor)
        took = time.perf_counter() - t0
        self.metrics.time_update += took
        return took

    # ---- now and then -------------------------------------------------------------------------------

    def reset_networks(self) -> None:
        """A reset (`reset_every`): the agent's networks towards a newly initialized agent's, drawn from the run's
        torch stream, so a resumed run resets to the same values."""
        fresh = self.config.agent.make_agent(self.buffer.obs.shape[1], self.buffer.action.shape[1], self.device)
        reset_(self.agent, fresh, self.config.reset_keep)

    def _agent_obs(self, obs: np.ndarray) -> torch.Tensor:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return obs_t if self.normalizer is None else self.normalizer(obs_t)

    @property
    def policy_actor(self) -> torch.nn.Module:
        return self.agent.actor if self.average is None else self.average.actor

    def policy(self, deterministic: bool = True):
        """The run's policy (the agent, or the average of its actor) as a function of NumPy observations (B, O) ->
        actions (B, A) in [-1, 1]."""
        @torch.no_grad()
        def act(obs: np.ndarray) -> np.ndarray:
            if self.average is None:
                return self.agent.act(self._agent_obs(obs), deterministic=deterministic).cpu().numpy()
            dist = self.average.actor(self._agent_obs(obs))
            return (dist.mode if deterministic else dist.sample()).cpu().numpy()
        return act

    def evaluate(self) -> tuple[float, float]:
        try:
            result = self.evaluator.evaluate(self.policy(), self.config.eval_episodes, self.env_steps)
        except EnvFault as fault:
            raise type(fault)(f"{fault} in the evaluation at step {self.env_steps:,}") from fault
        if not self.evaluator.finite():
            raise Diverged(f"training diverged: the evaluation return at step {self.env_steps:,} is {result[0]}.")
        normalizer = self.normalizer.state_dict() if self.normalizer is not None else None
        _or_warn(lambda: self.best.consider(self.env_steps, result[0], self.policy_actor.state_dict(), normalizer))
        for callback in self.on_evaluation:
            callback(self.env_steps, *result)
        return result

    def log(self, sps: float) -> None:
        metrics, bad = self.metrics.collect(self.agent.grad_norms() if self.metrics.updates else {})
        metrics.update({"time/sps": sps, "buffer/size": len(self.buffer), **self.agent.constants})
        self.success_rate = metrics.get("train/success_rate", self.success_rate)
        if self.config.on_nonfinite == "drop":
            metrics["train/dropped_episodes"] = self.dropped_episodes
        if self.config.gamma_start:
            metrics["train/gamma"] = self.buffer.gamma
        self.logger.log(metrics, self.env_steps)
        for callback in self.on_log:
            callback()
        if bad:
            more = f" (and {len(bad) - 1} more metrics)" if len(bad) > 1 else ""
            raise Diverged(f"training diverged: {bad[0]}{more} became {metrics['train/' + bad[0]]} by step "
                           f"{self.env_steps:,} (a smaller learning rate may help).")

    def _progress_stats(self) -> dict[str, str]:
        stats = {} if math.isnan(self.last_return) else {"return": f"{self.last_return:.1f}"}  # none ended yet
        if self.success_rate is not None:
            stats["success"] = f"{self.success_rate:.2f}"
        if self.evaluator.last is not None:
            stats["eval"] = f"{self.evaluator.last[0]:.1f}"
        if self.evaluator.last_success is not None:
            stats["eval success"] = f"{self.evaluator.last_success:.2f}"
        return stats

    def close(self) -> None:
        self.logger.close()
        self.collector.envs.close()
        self.evaluator.close()
        for resource in self.resources:
            resource.close()

    # ---- checkpoints: each part's state, written by the checkpointer --------------------------------

    def save(self, or_warn: bool = False) -> Path | None:
        """A checkpoint of the whole training state; `or_warn`: if it cannot be written, say so and go on
        (a periodic one: the run keeps its earlier checkpoints), else stop the run with that sentence."""
        def write() -> Path:
            return self.checkpoints.save_run(self.env_steps, self.parts(), self.state_dict(),
                                             self.speed.as_dict() if self.speed is not None else None,
                                             self.average.state_dict() if self.average is not None else None)
        return _or_warn(write) if or_warn else write()

    def parts(self) -> dict:
        """What keeps its own state in a checkpoint, beside the trainer's."""
        return {"agent": self.agent, "collector": self.collector, "buffer": self.buffer, "normalizer": self.normalizer}

    def state_dict(self) -> dict:
        session = time.perf_counter() - self._session_start if self._session_start is not None else 0.0
        state = {"env_steps": self.env_steps, "torch_rng": torch.get_rng_state(),
                 "last_eval": list(self.evaluator.last) if self.evaluator.last else None,
                 "last_eval_success": self.evaluator.last_success, "success_rate": self.success_rate,
                 "best": self.best.state, "run_time": self.run_time + session,
                 "dropped_episodes": self.dropped_episodes,
                 "wandb_id": self.logger.run_id}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load(self, payload: dict) -> None:
        """Continue from a checkpoint: agent, buffer, counters, RNG streams, and the episodes in flight."""
        state = self.checkpoints.restore(payload, self.parts())
        self.buffer.end_episodes(self.collector.restarted)
        self.env_steps, self.run_time = state["env_steps"], state["run_time"]
        self.dropped_episodes = state.get("dropped_episodes", 0)
        if self.average is not None:
            self.average.load_state_dict(payload["policy_actor"])
        _or_warn(lambda: self.best.load_state_dict(state["best"]))
        self.evaluator.last = tuple(state["last_eval"]) if state["last_eval"] else None
        self.evaluator.last_success = state.get("last_eval_success")  # (checkpoints before success rates: none)
        self.success_rate = state.get("success_rate")
        self.logger.forget_evaluations_after(self.env_steps)
        # Last, so that nothing above draws from the restored streams.
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


def _or_warn(write: Callable[[], Path | None]) -> Path | None:
    """A write the run can go on without (a periodic checkpoint, best.pt): if it fails, one line, and on."""
    try:
        return write()
    except CheckpointNotWritten as e:
        print(f"warning: {e} Training goes on.", file=sys.stderr, flush=True)
        return None
