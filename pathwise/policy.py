"""A trained policy outside the trainer: loaded from a checkpoint, acting on NumPy observations, exported."""

import contextlib
import copy
import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pathwise import hub
from pathwise.checkpoint import latest_checkpoint, load_checkpoint, policy_actor_state
from pathwise.config import from_dict
from pathwise.envs import obs_keys
from pathwise.errors import UserError
from pathwise.normalizer import ObsNormalizer


class BoundedPolicy(nn.Module):
    """The deterministic policy as one module: observations (B, O) -> actions (B, A) inside the env's bounds,
    with the training run's observation normalization, if it had one, built in."""

    def __init__(self, actor: nn.Module, action_low: torch.Tensor, action_high: torch.Tensor,
                 normalizer: nn.Module | None = None):
        super().__init__()
        self.actor = actor
        self.normalizer = normalizer if normalizer is not None else nn.Identity()
        self.register_buffer("action_low", action_low)
        self.register_buffer("action_high", action_high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.to_env_bounds(self.actor(self.normalizer(obs)).mode)

    def to_env_bounds(self, action: torch.Tensor) -> torch.Tensor:
        return self.action_low + 0.5 * (action + 1.0) * (self.action_high - self.action_low)


class Policy:
    """`act(obs)` takes one observation (O,) or a batch (B, O) and returns actions in the env's own bounds. A
    policy trained on Dict observations takes the Dict too (one, or a batch in each key), or the flat form:
    its keys' values end to end, in the order `obs_keys` gives."""

    def __init__(self, module: BoundedPolicy, env_id: str, env_steps: int, obs_dim: int, device: torch.device,
                 env_kwargs: dict | None = None, obs_keys: list[tuple[str, int]] | None = None,
                 action_repeat: int = 1):
        self.module, self.env_id, self.env_steps = module.eval(), env_id, env_steps
        self.env_kwargs = env_kwargs or {}  # what gymnasium.make was given in training
        self.action_repeat = action_repeat  # env steps each action was held for in training
        self.obs_dim, self.device = obs_dim, device
        self.obs_keys = obs_keys  # (key, size) of a Dict observation, in its flat order; None for a Box

    def flatten(self, obs: dict) -> np.ndarray:
        """A Dict observation (or a batch of them, keys of shape (B, ...)) as the flat (O,) or (B, O) array."""
        if self.obs_keys is None or any(key not in obs for key, _ in self.obs_keys):
            reads = f"the keys {', '.join(k for k, _ in self.obs_keys)}" if self.obs_keys else "flat observations"
            raise ValueError(f"this policy reads {reads}; the observation given has the keys {', '.join(obs)}.")
        parts = [np.asarray(obs[key], dtype=np.float32) for key, _ in self.obs_keys]
        first, size = parts[0], self.obs_keys[0][1]
        batched = first.size != size or (first.ndim > 1 and first.shape[0] == 1)  # a batch of one: (1, size)
        return np.concatenate([p.reshape(len(p), -1) if batched else p.reshape(-1) for p in parts], axis=-1)

    @torch.inference_mode()
    def act(self, obs: np.ndarray | dict, deterministic: bool = True) -> np.ndarray:
        obs = self.flatten(obs) if isinstance(obs, dict) else np.asarray(obs, dtype=np.float32)
        if obs.shape[-1:] != (self.obs_dim,) or obs.ndim > 2:
            raise ValueError(f"expected an observation of shape ({self.obs_dim},) or (batch, {self.obs_dim}), "
                             f"got {obs.shape}")
        obs_t = torch.as_tensor(obs, device=self.device).reshape(-1, self.obs_dim)
        dist = self.module.actor(self.module.normalizer(obs_t))
        action = self.module.to_env_bounds(dist.mode if deterministic else dist.sample()).cpu().numpy()
        return action[0] if obs.ndim == 1 else action

    def check_env(self, env: gym.Env) -> None:
        """A clear error unless `env` has the observation size and action bounds this policy was trained on."""
        obs_dim = int(gym.spaces.flatdim(env.observation_space))
        act = env.action_space
        low, high = self.module.action_low.cpu().numpy(), self.module.action_high.cpu().numpy()
        if (obs_dim != self.obs_dim or not isinstance(act, gym.spaces.Box) or act.shape != low.shape
                or not np.allclose(act.low, low) or not np.allclose(act.high, high)):
            raise UserError(f"this policy was trained on {self.env_id} (observations of size {self.obs_dim}, "
                            f"{len(low)} actions in [{low.min():g}, {high.max():g}]); the env given has "
                            f"observations of size {obs_dim} and action space {act}.")
        keys = obs_keys(env)
        if keys != self.obs_keys:  # the same flat size, read in another order or from other keys
            raise UserError(f"this policy was trained on {self.env_id}, which observes {_observes(self.obs_keys)}; "
                            f"the env given observes {_observes(keys)}.")


def _observes(keys: list[tuple[str, int]] | None) -> str:
    return f"the keys {', '.join(f'{key} ({size})' for key, size in keys)}" if keys else "a Box"


def load_policy(path: str | Path, device: str | torch.device = "cpu", which: str = "last") -> Policy:
    """The deterministic-or-sampled policy saved at `path`: a checkpoint file; a run directory, whose last
    checkpoint (`which="last"`, the default: the policy the run ended with) or best evaluation's policy
    (`which="best"`) is loaded; a model folder written by `export.py --hub-folder` (its files checked against
    their hashes); or `hf://ORG/REPO`, such a folder on the Hugging Face Hub."""
    if str(path).startswith(hub.HUB_PREFIX):
        path = hub.download(str(path))
    if hub.is_folder(path):
        payload, source = hub.read_folder(Path(path)), Path(path)
    else:
        payload, source = load_checkpoint(path, which), latest_checkpoint(path, which)
    try:
        device = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} was asked for, but torch sees no CUDA device; use cpu.")
    try:
        config, spaces = from_dict(payload["config"], "the checkpoint"), payload["spaces"]
        low = torch.tensor(spaces["action_low"], dtype=torch.float32)
        high = torch.tensor(spaces["action_high"], dtype=torch.float32)
        actor = config.agent.make_actor(spaces["obs_dim"], len(low))
        actor.load_state_dict(policy_actor_state(payload))
        normalizer = None
        if "obs_normalizer" in payload:
            normalizer = ObsNormalizer(spaces["obs_dim"])
            normalizer.load_state_dict(payload["obs_normalizer"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{source} is not a complete pathwise checkpoint "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:120]}).") from None
    module = BoundedPolicy(actor, low, high, normalizer).to(device)
    keys = [(str(key), int(size)) for key, size in spaces["obs_keys"]] if "obs_keys" in spaces else None
    return Policy(module, payload["env_id"], int(payload["env_steps"]), spaces["obs_dim"], device,
                  config.env_kwargs, keys, config.action_repeat)


FORMATS = ("pt2", "onnx")


def export_policy(policy: Policy, path: str | Path, format: str = "pt2") -> Path:
    """Write the deterministic policy, observations (B, O) -> actions (B, A) in the env's bounds for any batch
    size, with the observation normalization built in:

    - "pt2" (torch.export): `torch.export.load(path).module()(obs)` runs it with torch alone;
    - "onnx": `onnxruntime.InferenceSession(path).run(None, {"obs": obs})[0]` runs it without torch (opset 18;
      writing it needs the onnx extra: onnx and onnxscript).
    """
    if format not in FORMATS:
        raise UserError(f"export format {format!r} is not one of {', '.join(FORMATS)}.")
    module = copy.deepcopy(policy.module).to("cpu").eval()  # the caller's policy stays on its device
    example = (torch.zeros(2, policy.obs_dim),)
    dynamic = ({0: torch.export.Dim("batch")},)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp.{format}")
    if format == "pt2":
        torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic), tmp)
    else:
        _export_onnx(module, example, dynamic, tmp)
    tmp.replace(path)
    return path


def _export_onnx(module: nn.Module, example: tuple, dynamic: tuple, path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError('ONNX export needs onnx and onnxscript: pip install "pathwise-rl[onnx]" (or -e ".[onnx]" '
                        "in a checkout).") from None
    import logging

    # The exporter narrates each stage on stdout and warns about torchvision's operators, which no policy uses.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(module, example, str(path), dynamo=True, dynamic_shapes=dynamic, input_names=["obs"],
                              output_names=["action"], opset_version=18, verbose=False)
    except Exception as e:  # the exporter's own errors are many kinds; the user needs the one sentence
        path.unlink(missing_ok=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"this policy could not be exported to ONNX ({type(e).__name__}: {first[:200]}); the "
                        "torch.export format (--format pt2) may still work.") from None
