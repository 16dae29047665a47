"""The checkpoint format: plain tensors and Python data, written atomically, read without unpickling code."""

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from pathwise.config import Config, to_dict
from pathwise.errors import UserError

# 2: the config holds only the run's agent section; the episodes in flight are saved by their collector.
FORMAT_VERSION = 2
# Format 1 policies still load (evaluate, export); such a run cannot be resumed.
READABLE_VERSIONS = (1, 2)
CHECKPOINT_DIR = "checkpoints"
TMP_SUFFIX = ".tmp"  # a checkpoint being written; renamed once whole
KEEP_CHECKPOINTS = 2  # the training states kept: the newest, and the one before in case it is cut off


class Unreadable(UserError):
    """A file that is not a whole torch archive: cut off (by a crash, or a disk that filled) or corrupt."""


class CheckpointNotWritten(UserError):
    """A checkpoint could not be written (a full disk, a quota, a file-size limit); the files before it are whole."""


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a kill at any moment leaves the old file whole,
    and a write that fails leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not any(w in str(e) for w in ("PytorchStreamWriter", "inline_container")):
            raise  # not a write that failed (torch's zip writer reports those as RuntimeErrors naming itself)
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise CheckpointNotWritten(f"could not write {path} ({reason}: is the disk full, or a quota or file-size "
                                   "limit reached?); the checkpoints written before it are whole.") from None


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


def policy_actor_state(payload: dict) -> dict:
    """The actor of a checkpoint's policy: the average of `policy_average` where the run kept one, else the
    agent's."""
    return payload["policy_actor"] if "policy_actor" in payload else payload["agent_state"]["actor"]


def load_checkpoint(path: str | Path, which: str = "last") -> dict:
    """The payload of the checkpoint at `path` (a file, or a run directory's last or best), on the CPU."""
    path = latest_checkpoint(path, which)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one has lost its directory
        raise Unreadable(f"{path} is not a readable checkpoint (truncated or corrupt: not a torch archive).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses every object that is not a tensor or plain data, before anything in it runs.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it asks for {found.group(1)}" if found else "it holds objects other than tensors and plain data"
        raise UserError(f"{path} is not a safe checkpoint and was not loaded: {what}.") from None
    except OSError as e:
        raise UserError(f"{path} could not be read ({e.strerror or type(e).__name__}).") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise Unreadable(f"{path} is not a readable checkpoint (truncated, corrupt, or another kind of torch file: "
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


class Checkpointer:
    """The run's checkpoints folder: training states (`step_*.pt`, the newest `keep`) and the best policy
    (`best.pt`), each payload in the format above, written atomically. What goes wrong with the disk is handled
    here: a write that fails leaves the files before it whole, and what an earlier crash left half-written is
    set aside when the run resumes."""

    def __init__(self, run_dir: Path, config: Config, spaces: dict, keep: int = KEEP_CHECKPOINTS):
        self.run_dir, self.config, self.spaces, self.keep = run_dir, config, spaces, keep

    def policy_payload(self, env_steps: int, agent_state: dict, obs_normalizer: dict | None) -> dict:
        """What a policy needs to be loaded alone: the agent's section, the env, its spaces and the weights."""
        payload = {"agent": self.config.agent.name, "env_id": self.config.env, "env_steps": env_steps,
                   "config": to_dict(self.config), "spaces": self.spaces, "agent_state": agent_state}
        if obs_normalizer is not None:
            payload["obs_normalizer"] = obs_normalizer
        return payload

    @property
    def best(self) -> Path:
        return best_path(self.run_dir)

    def save_run(self, env_steps: int, parts: dict, trainer_state: dict, speed: dict | None,
                 policy_actor: dict | None = None) -> Path:
        """The whole training state: each part's own state (`parts`: agent, collector, buffer, normalizer or None),
        the trainer's, what the run chose for speed, and the policy's actor where it is not the agent's (the
        average of `policy_average`)."""
        normalizer = parts["normalizer"].state_dict() if parts["normalizer"] is not None else None
        payload = {**self.policy_payload(env_steps, parts["agent"].state_dict(), normalizer),
                   "collector": parts["collector"].state_dict(), "trainer": trainer_state}
        if policy_actor is not None:
            payload["policy_actor"] = policy_actor
        if self.config.save_buffer:
            payload["buffer"] = parts["buffer"].state_dict()
        if speed is not None:
            payload["speed"] = speed
        return self.save(payload, env_steps)

    @staticmethod
    def restore(payload: dict, parts: dict) -> dict:
        """Each part back to its state in `payload`; the trainer's own state, returned."""
        parts["agent"].load_state_dict(payload["agent_state"])
        if parts["normalizer"] is not None:
            parts["normalizer"].load_state_dict(payload["obs_normalizer"])
        if "buffer" in payload:
            parts["buffer"].load_state_dict(payload["buffer"])
        parts["collector"].load_state_dict(payload["collector"])
        return payload["trainer"]

    def save(self, payload: dict, env_steps: int) -> Path:
        """A training state at `env_steps`; the oldest beyond `keep` go once it is whole."""
        path = checkpoint_path(self.run_dir, env_steps)
        save_checkpoint(payload, path)
        prune_checkpoints(self.run_dir, self.keep)
        return path

    def save_best(self, payload: dict) -> Path:
        save_checkpoint(payload, self.best)
        return self.best

    def drop_best(self) -> None:
        self.best.unlink(missing_ok=True)


def load_latest_whole(run_dir: Path) -> tuple[dict, list[str]]:
    """The newest training state of `run_dir` that reads whole, and a sentence on each thing an earlier crash left:
    a `.tmp` file (a write cut off: never a whole checkpoint) is removed, and a newer checkpoint that does not read
    whole is set aside as `*.unreadable` (neither read nor pruned in place of a whole one). Call it holding the run
    directory's lock, so that no live writer owns what it removes."""
    notes = []
    for stray in sorted((run_dir / CHECKPOINT_DIR).glob(f"*{TMP_SUFFIX}")):
        stray.unlink()
        notes.append(f"Removed {stray}, a checkpoint whose writing was cut off.")
    for path in sorted((run_dir / CHECKPOINT_DIR).glob("step_*.pt"), reverse=True):
        try:
            return load_checkpoint(path), notes
        except Unreadable as e:  # only a file cut off or corrupt: one of another version or unsafe stays put
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            notes.append(f"{e} It was set aside as {aside.name}.")
    if not notes:
        raise UserError(f"{run_dir} holds no checkpoint (expected {run_dir / CHECKPOINT_DIR}/step_*.pt).")
    raise UserError(f"{run_dir} holds no whole checkpoint to resume from: {' '.join(notes)}")
