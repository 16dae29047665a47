"""Building a run from its config, fresh or resumed from its run directory, and training it."""

import fcntl
import os
import random
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np
import torch

from agents.normalizer import ObsNormalizer
from agents.replay_buffer import ReplayBuffer
from envs import make_env, make_vector_env, space_signature
from pathwise import checkpoint
from pathwise.collector import Collector
from pathwise.config import Config, check_layer, from_dict, merge, run_fields, save_yaml
from pathwise.cpu import configure_cpu
from pathwise.errors import UserError
from pathwise.evaluation import Evaluator
from pathwise.logger import Logger
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


def build_trainer(config: Config, resuming: bool = False, wandb_id: str | None = None) -> Trainer:
    """Everything a run needs, made from its config: device, seeds, envs, run directory, agent, buffer, logger."""
    device = resolve_device(config.device)
    if config.video_every:  # render without a display: pygame (classic control) and MuJoCo
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("MUJOCO_GL", "egl")
    configure_cpu(config.threads)
    seed_everything(config.seed)
    # The evaluation env first: a bad env id or env_kwargs is refused here, before any subprocess starts.
    eval_env = make_env(config.env, env_kwargs=config.env_kwargs)
    envs = make_vector_env(config.env, config.num_envs, config.vector_mode, config.env_kwargs)
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} is a file; give a folder for the run.")
    if not resuming and any((run_dir / checkpoint.CHECKPOINT_DIR).glob("*.pt")):
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick another "
                        "--run-dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_run_dir(run_dir)
    save_yaml(config, run_dir / "config.yaml")
    agent = config.agent.make_agent(obs_dim, act_dim, device, precision=config.precision, compile=config.compile)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim, device, seed=config.seed)
    logger = Logger(run_dir, config, run_id=wandb_id)
    evaluator = Evaluator(eval_env, config.env, config.env_kwargs, config.seed, run_dir, logger)
    normalizer = ObsNormalizer(obs_dim).to(device) if config.normalize_obs else None
    trainer = Trainer(config, Collector(envs, config.seed), agent, buffer, evaluator, logger, run_dir, device,
                      space_signature(eval_env), normalizer)
    trainer.resources.append(lock)
    return trainer


def resume_config(run_dir: str | Path, overrides: dict) -> tuple[Config, dict]:
    """The config of the run in `run_dir` with `overrides` (flat: flag names) applied, and its latest
    checkpoint's payload; one sentence if it cannot be resumed so."""
    if not Path(run_dir).is_dir():
        raise UserError(f"--resume takes a run directory, and {run_dir} is not one.")
    payload = checkpoint.load_checkpoint(run_dir)
    allowed = run_fields("resumable")
    refused = sorted(set(overrides) - set(allowed))
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        allowed_flags = ", ".join("--" + k.replace("_", "-") for k in allowed)
        raise UserError(f"{flags} cannot change in a resumed run; with --resume only {allowed_flags} may be given.")
    if payload["format_version"] != checkpoint.FORMAT_VERSION:
        raise UserError(f"{checkpoint.latest_checkpoint(run_dir)} was written by an earlier version of pathwise "
                        f"(checkpoint format {payload['format_version']}); it can be evaluated and exported, but "
                        "not resumed.")
    check_layer(overrides, "the command line", payload["agent"])
    config = from_dict(merge(payload["config"], {**overrides, "run_dir": str(run_dir)}), "the checkpoint")
    if config.total_steps <= payload["env_steps"]:
        raise UserError(f"{run_dir} has already trained {payload['env_steps']:,} of its {config.total_steps:,} "
                        "env steps; give a larger --total-steps to train on.")
    return config, payload


def resume_trainer(run_dir: str | Path, overrides: dict) -> Trainer:
    """The run in `run_dir`, restored from its latest checkpoint; `overrides` may change the resumable fields."""
    config, payload = resume_config(run_dir, overrides)
    trainer = build_trainer(config, resuming=True, wandb_id=payload["trainer"].get("wandb_id"))
    trainer.load(payload)
    return trainer


def _run(trainer: Trainer) -> Summary:
    try:
        return trainer.run()
    finally:
        trainer.close()


def train(config: Config, announce=None) -> Summary:
    """Build the run and train it; `announce()` is called once the run is built (so after any bad input)."""
    trainer = build_trainer(config)
    if announce is not None:
        announce()
    return _run(trainer)


def resume(run_dir: str | Path, overrides: dict) -> Summary:
    return _run(resume_trainer(run_dir, overrides))
