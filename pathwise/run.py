"""Building a run from its config, fresh or resumed from its run directory, and training it."""

import contextlib
import fcntl
import os
import random
import sys
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np
import torch

from pathwise import checkpoint
from pathwise.batched_collector import BatchedCollector
from pathwise.checkpoint import Checkpointer
from pathwise.collector import Collector
from pathwise.config import Config, check_layer, flag, from_dict, merge, run_fields, save_yaml
from pathwise.envs import make_batched_env, make_env, make_vector_env, obs_columns, obs_keys, space_signature
from pathwise.errors import EnvFault, UserError
from pathwise.evaluation import Evaluator
from pathwise.her import GOAL_KEYS, Hindsight
from pathwise.logger import Logger
from pathwise.normalizer import ObsNormalizer
from pathwise.replay_buffer import ReplayBuffer
from pathwise.speed import Plan, accelerate, plan_speed
from pathwise.speed.machine import Threads, configure_cpu
from pathwise.trainer import Summary, Trainer


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


def default_run_dir(config: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.env.replace('/', '-')}__{config.agent.name}__s{config.seed}__{stamp}"


def lock_run_dir(run_dir: Path) -> IO:
    """An exclusive lock on the run directory, held while the returned file stays open (the process's life at
    most): a second process that would train in it is refused, instead of both writing its checkpoints."""
    lock = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip()
        lock.close()
        raise UserError(f"{run_dir} is in use by another training process{f' (pid {pid})' if pid else ''}; "
                        "wait for it to end, or stop it (Ctrl-C or SIGTERM saves it) and resume then.") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def build_trainer(config: Config, resuming: bool = False, wandb_id: str | None = None, env_steps: int = 0) -> Trainer:
    """Everything a run needs, made from its config: device, seeds, envs, run directory, agent, buffer, logger, and
    what pays for speed on this machine. `env_steps`: what a resumed run has trained already."""
    device = resolve_device(config.device)
    if config.cuda_graph and device.type != "cuda":
        raise UserError(f"--cuda-graph needs a CUDA device, and this run's device is {device.type}; give "
                        "--device cuda, or train without --cuda-graph.")
    if config.video_every:  # render without a display: pygame (classic control) and MuJoCo
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("MUJOCO_GL", "egl")
    seed_everything(config.seed)
    # What is opened here is closed again if a later part fails (the trainer closes it all once built).
    with contextlib.ExitStack() as opened:
        # The evaluation env first: a bad env id or env_kwargs is refused here, before any subprocess starts.
        eval_env = opened.enter_context(contextlib.closing(make_env(config.env, env_kwargs=config.env_kwargs,
                                                                    action_repeat=config.action_repeat)))
        if config.env_kwargs:
            try_env_kwargs(eval_env, config)
        render_modes = eval_env.metadata.get("render_modes") or []
        if config.video_every and "rgb_array" not in render_modes:
            raise UserError(f"environment '{config.env}' cannot render frames (its render modes: "
                            f"{', '.join(render_modes) or 'none'}), so --video-every has nothing to record; leave it "
                            "out.")
        if not config.her and config.action_repeat == 1 and not resuming and goal_conditioned(eval_env):
            print(f"note: '{config.env}' is goal-conditioned (achieved_goal, desired_goal, compute_reward); --her "
                  "relabels goals in hindsight, which a sparse reward needs to learn from.", file=sys.stderr,
                  flush=True)
        threads = Threads(config.threads)
        collector = make_collector(config, eval_env, threads.count)
        opened.callback(collector.envs.close)
        obs_dim, act_dim = collector.obs_dim, collector.act_dim
        run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"--run-dir {run_dir} is a file; give a folder for the run.")
        if not resuming and checkpoint.has_checkpoint(run_dir):
            raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick another "
                            "--run-dir.")
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = opened.enter_context(lock_run_dir(run_dir))
        configure_cpu(threads.count)
        plan = plan_speed(config, device, expected_updates(config, env_steps),
                          (config.total_steps - env_steps) // config.action_repeat, (obs_dim, act_dim), threads)
        save_yaml(config, run_dir / "config.yaml", resolved=plan.as_dict())
        agent = config.agent.make_agent(obs_dim, act_dim, device)
        accelerate(agent, plan)
        hindsight = make_hindsight(eval_env, config, device) if config.her else None
        try:
            buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim, device, seed=config.seed,
                                  gamma=config.agent.gamma, n_step=config.agent.n_step, num_envs=config.num_envs,
                                  hindsight=hindsight)
        except (RuntimeError, MemoryError) as e:
            raise UserError(f"a replay buffer of {config.buffer_size:,} transitions does not fit in memory "
                            f"({type(e).__name__}); give a smaller --buffer-size.") from None
        logger = Logger(run_dir, config, run_id=wandb_id, resolved=plan.as_dict())
        opened.callback(logger.close)
        evaluator = Evaluator(eval_env, config.env, config.env_kwargs, config.seed, run_dir, logger,
                              config.action_repeat)
        normalizer = ObsNormalizer(obs_dim).to(device) if config.normalize_obs else None
        checkpoints = Checkpointer(run_dir, config, space_signature(eval_env))
        trainer = Trainer(config, collector, agent, buffer, evaluator, logger, checkpoints, device,
                          normalizer)
        trainer.speed = plan
        trainer.on_log.append(threads.adjust)
        trainer.resources.append(lock)
        opened.pop_all()
    return trainer


def make_collector(config: Config, eval_env, threads: int) -> Collector | BatchedCollector:
    """The training envs (--num-envs, --vector-mode) and what steps them."""
    if config.vector_mode in ("sync", "async"):
        limit = eval_env.spec.max_episode_steps if eval_env.spec is not None else None
        if config.stagger_episodes and not limit:
            raise UserError(f"--stagger-episodes staggers the envs' time limits, and '{config.env}' has none.")
        envs = make_vector_env(config.env, config.num_envs, config.vector_mode, config.env_kwargs, config.on_nonfinite,
                               config.action_repeat)
        # The collector counts the agent's steps: a time limit of `limit` env steps is limit / action_repeat of them.
        return Collector(envs, config.seed, -(-limit // config.action_repeat) if config.stagger_episodes else 0)
    if config.action_repeat > 1:
        playground = " (a playground/ task holds its actions with --env-kwargs action_repeat=N)" \
            if config.vector_mode == "mjx" else ""
        raise UserError(f"--action-repeat {config.action_repeat} needs --vector-mode sync or async; "
                        f"{config.vector_mode} steps its envs one env step an action{playground} (--action-repeat 1 "
                        "acts at every env step; the dm_control/ tasks' preset holds each action for 2).")
    if config.on_nonfinite == "drop":
        raise UserError(f"--on-nonfinite drop needs --vector-mode sync or async; with {config.vector_mode} a "
                        "non-finite observation or reward stops the run.")
    envs = make_batched_env(config.env, config.num_envs, config.vector_mode, config.seed, config.env_kwargs, threads)
    if envs.obs_dim != eval_env.observation_space.shape[0]:
        envs.close()
        raise UserError(f"{config.vector_mode}'s '{config.env}' observes {envs.obs_dim} numbers and Gymnasium's "
                        f"(the evaluation env) {eval_env.observation_space.shape[0]}; the two are not the same task.")
    if config.stagger_episodes and not hasattr(envs, "start_elapsed"):
        envs.close()
        raise UserError(f"{config.vector_mode} cannot start an episode part-way through its time limit, as "
                        "--stagger-episodes asks; pass --no-stagger-episodes.")
    return BatchedCollector(envs, config.seed, config.stagger_episodes)


def goal_conditioned(env) -> bool:
    """Whether `env` observes a Dict with achieved_goal and desired_goal, and has a compute_reward method."""
    keys = dict(obs_keys(env) or [])
    return all(key in keys for key in GOAL_KEYS) and callable(getattr(env.unwrapped, "compute_reward", None))


def make_hindsight(env, config: Config, device: torch.device) -> Hindsight:
    """Goal relabelling for `env`, or one sentence on why `env` cannot have it."""
    keys = dict(obs_keys(env) or [])
    if not goal_conditioned(env):
        observes = f"observes {', '.join(keys)}" if keys else "has Box observations"
        raise UserError(f"--her needs a goal-conditioned environment (Dict observations with achieved_goal and "
                        f"desired_goal, and a compute_reward method); '{config.env}' {observes}.")
    if keys["achieved_goal"] != keys["desired_goal"]:
        raise UserError(f"--her needs achieved_goal and desired_goal of one size; '{config.env}' has "
                        f"{keys['achieved_goal']} and {keys['desired_goal']}.")
    compute_terminated = getattr(env.unwrapped, "compute_terminated", None)
    return Hindsight(obs_columns(obs_keys(env)), env.unwrapped.compute_reward,
                     compute_terminated if callable(compute_terminated) else None, config.her_relabels,
                     config.buffer_size, config.num_envs, device)


def expected_updates(config: Config, env_steps: int = 0) -> int:
    """The gradient updates a run will make from `env_steps` on: each action of all num_envs envs (action_repeat
    env steps each) is followed by updates_per_step updates, once learning_starts steps have passed."""
    steps = max(0, config.total_steps - max(config.learning_starts, env_steps))
    return -(-steps // config.env_steps_per_call) * config.updates_per_step


def try_env_kwargs(env, config: Config) -> None:
    """One reset and one step of the evaluation env, so that an env_kwargs value of the wrong kind is refused
    now, in one sentence, rather than by the first step of training."""
    try:
        env.reset(seed=config.seed)
        env.step(env.action_space.sample() * 0)
    except Exception as e:  # whatever the env raises, the cause is the user's env_kwargs
        e = e.__cause__ if isinstance(e, EnvFault) and e.__cause__ else e
        raise UserError(f"environment '{config.env}' fails with env_kwargs {config.env_kwargs}: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}.") from None


def resume_config(run_dir: str | Path, overrides: dict, to_train: bool = True,
                  payload: dict | None = None) -> tuple[Config, dict]:
    """The config of the run in `run_dir` with `overrides` (flat: flag names) applied, and its latest
    checkpoint's payload (or `payload`); one sentence if it cannot be resumed so (`to_train=False`: only to be
    shown, so a finished run is fine)."""
    if not Path(run_dir).is_dir():
        raise UserError(f"--resume takes a run directory, and {run_dir} is not one.")
    payload = payload or checkpoint.load_checkpoint(run_dir)
    allowed = run_fields("resumable")
    refused = sorted(set(overrides) - set(allowed))
    if refused:
        flags = ", ".join(map(flag, refused))
        allowed_flags = ", ".join(map(flag, allowed))
        raise UserError(f"{flags} cannot change in a resumed run; with --resume only {allowed_flags} may be given.")
    if payload["format_version"] != checkpoint.FORMAT_VERSION:
        raise UserError(f"{checkpoint.latest_checkpoint(run_dir)} was written by an earlier version of pathwise "
                        f"(checkpoint format {payload['format_version']}); it can be evaluated and exported, but "
                        "not resumed.")
    check_layer(overrides, "the command line", payload["agent"])
    config = from_dict(merge(payload["config"], {**overrides, "run_dir": str(run_dir)}), "the checkpoint")
    if to_train and config.total_steps <= payload["env_steps"]:
        raise UserError(f"{run_dir} has already trained {payload['env_steps']:,} of its {config.total_steps:,} "
                        "env steps; give a larger --total-steps to train on.")
    return config, payload


def resume_trainer(run_dir: str | Path, overrides: dict) -> Trainer:
    """The run in `run_dir`, restored from its latest whole checkpoint (what an earlier crash left half-written is
    cleared away first, and said); `overrides` may change the resumable fields."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--resume takes a run directory, and {run_dir} is not one.")
    with lock_run_dir(run_dir):  # released again before the envs' workers start (forked, they would hold it)
        payload, notes = checkpoint.load_latest_whole(run_dir)
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    config, payload = resume_config(run_dir, overrides, payload=payload)
    trainer = build_trainer(config, resuming=True, wandb_id=payload["trainer"].get("wandb_id"),
                            env_steps=payload["env_steps"])
    trainer.load(payload)
    return trainer


def _run(trainer: Trainer) -> Summary:
    try:
        return trainer.run()
    finally:
        trainer.close()


def _announce(plan: Plan) -> None:
    """The speed plan's line, and its warnings (stderr), before training starts."""
    print(plan.summary(), flush=True)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def train(config: Config, announce=None) -> Summary:
    """Build the run and train it; `announce()` is called once the run is built (so after any bad input)."""
    trainer = build_trainer(config)
    if announce is not None:
        announce()
        _announce(trainer.speed)
    return _run(trainer)


def resume(run_dir: str | Path, overrides: dict, announce=None) -> Summary:
    trainer = resume_trainer(run_dir, overrides)
    if announce is not None:
        announce()
        _announce(trainer.speed)
    return _run(trainer)
