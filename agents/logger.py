"""Where metrics go: wandb (online, offline or off) and a small local file of evaluation results."""

import csv
import netrc
import os
import sys
from pathlib import Path

from agents.config import Config, to_dict

WANDB_PROJECT = "pathwise"


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str | None) -> str:
    """The mode asked for; without one, online when an API key is known, otherwise offline (never a prompt)."""
    return mode or ("online" if wandb_logged_in() else "offline")


class Logger:
    """`log(metrics, step)` with step = env steps; evaluations also go to RUN_DIR/evaluations.csv."""

    def __init__(self, run_dir: Path, config: Config, agent_name: str, run_id: str | None = None):
        self.run_dir = run_dir
        self.mode = resolve_wandb_mode(config.wandb)
        self.eval_path = run_dir / "evaluations.csv"
        if not self.eval_path.exists():
            self.eval_path.write_text("env_steps,return_mean,return_std,length_mean\n")
        self.run, self.run_id = None, run_id
        if self.mode != "disabled":
            import wandb  # imported here: it takes a second and is not needed with wandb disabled

            self.run = wandb.init(
                project=WANDB_PROJECT, mode=self.mode, dir=run_dir, name=run_dir.name, config=to_dict(config),
                group=f"{config.env}__{agent_name}", tags=[config.env, agent_name, f"seed{config.seed}"],
                id=run_id, resume="allow",
            )
            self.run_id = self.run.id
            if self.mode == "offline":
                print(f"wandb is offline; upload this run later with: wandb sync {run_dir / 'wandb'}/offline-run-*",
                      file=sys.stderr)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_eval(self, step: int, return_mean: float, return_std: float, length_mean: float) -> None:
        with open(self.eval_path, "a", newline="") as f:
            csv.writer(f).writerow([step, f"{return_mean:.4f}", f"{return_std:.4f}", f"{length_mean:.1f}"])
        self.log({"eval/return_mean": return_mean, "eval/return_std": return_std,
                  "eval/episode_length": length_mean}, step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
