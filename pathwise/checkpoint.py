"""The checkpoint format: plain tensors and Python data, written atomically, read without unpickling code."""

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from pathwise.errors import UserError

# 2: the config holds only the run's agent section; the episodes in flight are saved by their collector.
FORMAT_VERSION = 2
# Format 1 policies still load (evaluate, export); such a run cannot be resumed.
READABLE_VERSIONS = (1, 2)
CHECKPOINT_DIR = "checkpoints"


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a kill at any moment leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoint_path(run_dir: Path, env_steps: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{env_steps:09d}.pt"


def best_path(run_dir: Path) -> Path:
    """The policy of the run's best evaluation (a policy, not a training state: it is not resumed from)."""
    return run_dir / CHECKPOINT_DIR / "best.pt"


WHICH = ("last", "best")


def latest_checkpoint(path: str | Path, which: str = "last") -> Path:
    """`path` itself if it is a file; else, of the run directory `path`, its newest checkpoint (`which="last"`)
    or the policy of its best evaluation (`which="best"`)."""
    path = Path(path)
    if which not in WHICH:
        raise UserError(f"which policy of a run: last or best, not {which!r}.")
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    if which == "best":
        if not best_path(path).is_file():
            raise UserError(f"{path} has no best policy yet ({best_path(path)} is written at its first "
                            "evaluation); use the last one.")
        return best_path(path)
    found = sorted((path / CHECKPOINT_DIR).glob("step_*.pt"))
    if not found:
        raise UserError(f"{path} holds no checkpoint (expected {path / CHECKPOINT_DIR}/step_*.pt).")
    return found[-1]


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run directory holds a checkpoint to resume from (best.pt is a policy, not one)."""
    return any((run_dir / CHECKPOINT_DIR).glob("step_*.pt"))


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    for old in sorted((run_dir / CHECKPOINT_DIR).glob("step_*.pt"))[:-keep]:
        old.unlink()


def load_checkpoint(path: str | Path, which: str = "last") -> dict:
    """The payload of the checkpoint at `path` (a file, or a run directory's last or best), on the CPU."""
    path = latest_checkpoint(path, which)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one has lost its directory
        raise UserError(f"{path} is not a readable checkpoint (truncated or corrupt: not a torch archive).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses every object that is not a tensor or plain data, before anything in it runs.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it asks for {found.group(1)}" if found else "it holds objects other than tensors and plain data"
        raise UserError(f"{path} is not a safe checkpoint and was not loaded: {what}.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable checkpoint (truncated, corrupt, or another kind of torch file: "
                        f"{type(e).__name__}).") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise UserError(f"{path} is not a pathwise checkpoint.")
    if payload["format_version"] not in READABLE_VERSIONS:
        raise UserError(f"{path} has checkpoint format {payload['format_version']}; this version of pathwise "
                        f"reads formats {', '.join(map(str, READABLE_VERSIONS))}.")
    if payload["format_version"] == 1 and isinstance(payload.get("config"), dict):
        # Format 1 kept a section for every agent; the run's own is the one that counts.
        config, name = payload["config"], payload["config"].get("agent")
        payload["config"] = {k: v for k, v in config.items() if k == name or not isinstance(v, dict)}
    return payload
