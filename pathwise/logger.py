"""Where metrics go: wandb (online, offline or off) and a small local file of evaluation results."""

import csv
import hashlib
import importlib.metadata
import json
import netrc
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from pathwise.config import Config, run_fields, to_dict

WANDB_PROJECT = "pathwise"
TENSORBOARD_DIR = "tensorboard"
# success_rate: empty where the env does not report success (info["is_success"], or info["success"]).
EVAL_COLUMNS = ("env_steps", "return_mean", "return_std", "length_mean", "success_rate")
ROOT = Path(__file__).resolve().parent.parent


def installed_version() -> str:
    """pathwise's version as installed (its metadata), or "not installed" for a checkout run as it is."""
    try:
        return importlib.metadata.version("pathwise-rl")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str | None) -> str:
    """The flag; else WANDB_MODE; else online with an API key (environment or ~/.netrc), offline without.
    The mode is always passed to wandb.init explicitly, so wandb never prompts for a login."""
    if mode:
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if env_mode == "dryrun":
        return "offline"
    return "online" if wandb_logged_in() else "offline"


def experiment_identity(config: dict) -> dict:
    """The part of a config (in its dict form) that decides what a run learns: the fields marked as part of the
    experiment, and the agent's section. Runs that share it differ only by seed and run settings."""
    keep = set(run_fields("experiment")) | {config.get("agent")}
    return {k: v for k, v in config.items() if k in keep}


def experiment_group(config: Config) -> str:
    """A name shared by runs whose configs differ only by seed (and other fields that do not change learning)."""
    identity = experiment_identity(to_dict(config))
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.env}__{config.agent.name}__{digest}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def read_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric from the run's TensorBoard event files, in step order. Where sessions of a
    resumed run both logged a step (after the checkpoint the resume began from), the later session's value is
    kept."""
    from tensorboardX.proto.event_pb2 import Event

    by_step: dict[int, float] = {}
    for path in sorted((run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        data, i = path.read_bytes(), 0
        while i + 12 <= len(data):  # TFRecord: length (8 bytes), its CRC (4), the record, its CRC (4)
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 16 + n
            for value in event.summary.value:
                if value.tag == tag:
                    by_step[event.step] = value.simple_value
    steps = sorted(by_step)
    return np.array(steps, dtype=np.int64), np.array([by_step[s] for s in steps])


class Logger:
    """`log(metrics, step)` with step = env steps: to wandb and TensorBoard (each if on); evaluations also go to
    RUN_DIR/evaluations.csv."""

    def __init__(self, run_dir: Path, config: Config, run_id: str | None = None, resolved: dict | None = None):
        """`resolved`: what the config's `auto` settings came to on this machine (wandb's config `resolved`)."""
        self.run_dir = run_dir
        self.mode = resolve_wandb_mode(config.wandb)
        self.eval_path = run_dir / "evaluations.csv"
        if not self.eval_path.exists():
            self.eval_path.write_text(",".join(EVAL_COLUMNS) + "\n")
        # A run begun before success_rate was recorded keeps the columns it began with.
        self.eval_columns = self.eval_path.read_text().split("\n", 1)[0].split(",")
        self.tensorboard = None
        if config.tensorboard:
            from tensorboardX import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / TENSORBOARD_DIR), flush_secs=30)
        self.run, self.run_id = None, run_id
        if self.mode == "disabled":
            return
        import wandb  # imported here: it takes a second and is not needed with wandb disabled

        self.run = wandb.init(
            project=WANDB_PROJECT, mode=self.mode, dir=run_dir, name=run_dir.name, id=run_id, resume="allow",
            config={**to_dict(config), "pathwise_version": installed_version(),
                    "git_commit": git_commit()},
            group=config.wandb_group or experiment_group(config),
            tags=[config.env, config.agent.name, f"seed{config.seed}"],
            settings=wandb.Settings(silent=True),
        )
        self.run_id = self.run.id
        if resolved:  # may differ between sessions of a resumed run
            self.run.config.update({"resolved": resolved}, allow_val_change=True)
        if self.mode == "offline":
            print(f"wandb: offline; upload later with: wandb sync {Path(self.run.dir).parent}", file=sys.stderr)
        else:
            print(f"wandb: {self.run.url}", file=sys.stderr)

    def forget_evaluations_after(self, step: int) -> None:
        """Drop evaluation rows past `step`: a run resumed from a checkpoint at `step` records them again."""
        lines = self.eval_path.read_text().splitlines(keepends=True)
        kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
        if len(kept) != len(lines):
            self.eval_path.write_text("".join(kept))

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)
        if self.tensorboard is not None:
            for key, value in metrics.items():
                self.tensorboard.add_scalar(key, value, step)

    def log_eval(self, step: int, return_mean: float, return_std: float, length_mean: float,
                 success_rate: float | None = None) -> None:
        row = [step, f"{return_mean:.4f}", f"{return_std:.4f}", f"{length_mean:.1f}",
               "" if success_rate is None else f"{success_rate:.4f}"]
        with open(self.eval_path, "a", newline="") as f:
            csv.writer(f).writerow(row[:len(self.eval_columns)])
        metrics = {"eval/return_mean": return_mean, "eval/return_std": return_std, "eval/episode_length": length_mean}
        if success_rate is not None:
            metrics["eval/success_rate"] = success_rate
        self.log(metrics, step)

    def log_video(self, path: Path, step: int) -> None:
        if self.run is not None:
            import wandb

            self.run.log({"eval/video": wandb.Video(str(path), format="mp4")}, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.run is not None:
            self.run.finish()
            self.run = None
            if self.mode == "offline":  # every session of the run, a resumed one included
                runs = " ".join(str(p) for p in sorted((self.run_dir / "wandb").glob("offline-run-*")))
                print(f"wandb: offline; upload this run with: wandb sync {runs}", file=sys.stderr)
