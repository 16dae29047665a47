"""A shareable model folder, in the form the Hugging Face Hub expects: safetensors weights, the resolved config, the
evaluation, a model card, the last evaluation video, and a hash of each file. Uploading and downloading one need
the hub extra (huggingface_hub) and, to upload, a token (`hf auth login` or HF_TOKEN)."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import yaml

from pathwise.checkpoint import policy_actor_state
from pathwise.config import from_dict, to_dict
from pathwise.errors import UserError

WEIGHTS, CONFIG, METADATA, EVALUATION, CARD, VIDEO = ("model.safetensors", "config.yaml", "policy.json",
                                                       "evaluation.json", "README.md", "replay.mp4")
HASHES = "SHA256SUMS"
REQUIRED = (WEIGHTS, CONFIG, METADATA, EVALUATION, CARD)
HUB_PREFIX = "hf://"


def is_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / METADATA).is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_folder(payload: dict, evaluation: dict, folder: Path, video: Path | None = None) -> Path:
    """The folder of the policy in the checkpoint `payload`, with `evaluation` (return_mean, return_std,
    episodes, deterministic) on its card; `video`, if given, is copied in. An existing folder is replaced."""
    from safetensors.torch import save_file

    config = dataclasses.replace(from_dict(payload["config"], "the checkpoint"), run_dir=None)
    name = f"{config.agent.name.upper()} on {config.env}"
    if folder.exists():
        if not is_folder(folder) and any(folder.iterdir()):
            raise UserError(f"{folder} exists and is not a pathwise model folder; give an empty or new folder.")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tensors = {f"actor.{k}": v for k, v in policy_actor_state(payload).items()}
    tensors.update({f"obs_normalizer.{k}": v for k, v in payload.get("obs_normalizer", {}).items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / WEIGHTS)
    (folder / CONFIG).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    (folder / METADATA).write_text(json.dumps({"agent": config.agent.name, "env_id": config.env,
                                               "env_steps": int(payload["env_steps"]), "spaces": payload["spaces"],
                                               "library": "pathwise"}, indent=1))
    (folder / EVALUATION).write_text(json.dumps(evaluation, indent=1))
    if video is not None:
        shutil.copyfile(video, folder / VIDEO)
    (folder / CARD).write_text(model_card(name, config, payload, evaluation, video is not None))
    files = sorted(p.name for p in folder.iterdir() if p.name != HASHES)
    (folder / HASHES).write_text("".join(f"{_sha256(folder / f)}  {f}\n" for f in files))
    return folder


def model_card(name: str, config, payload: dict, evaluation: dict, has_video: bool) -> str:
    mean, std, episodes = evaluation["return_mean"], evaluation["return_std"], evaluation["episodes"]
    metadata = {
        "library_name": "pathwise",
        "tags": ["reinforcement-learning", "deep-reinforcement-learning", "pathwise", config.agent.name, config.env],
        "model-index": [{"name": name, "results": [{
            "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
            "dataset": {"type": config.env, "name": config.env},
            "metrics": [{"type": "mean_reward", "value": f"{mean:.2f} +/- {std:.2f}", "name": "mean_reward"}]}]}],
    }
    video = f"\n![An evaluation episode]({VIDEO})\n" if has_video else ""
    success = f" Success rate: **{evaluation['success_rate']:.2f}**." if "success_rate" in evaluation else ""
    keys = payload["spaces"].get("obs_keys")
    reads = "" if not keys else (" It takes the env's Dict observations, or their flat form: " + ", ".join(
        f"`{key}` ({size})" for key, size in keys) + ", end to end (the exported programs take the flat form).")
    if config.action_repeat > 1:
        reads += (f" It was trained holding each action for {config.action_repeat} env steps: step the env "
                  f"{config.action_repeat} times with each action it gives.")
    return f"""---
{yaml.safe_dump(metadata, sort_keys=False)}---

# {name}

A {config.agent.name.upper()} policy for the Gymnasium environment `{config.env}`, trained for
{int(payload["env_steps"]):,} env steps with [pathwise](https://pypi.org/project/pathwise-rl/) (pathwise policy
gradients in PyTorch). Its return over {episodes} {"deterministic" if evaluation["deterministic"] else "stochastic"}
evaluation episodes: **{mean:.1f} +- {std:.1f}**.{success}
{video}
## Use it

```python
from pathwise import load_policy

policy = load_policy("hf://ORG/REPO")     # or the path of this folder
action = policy.act(obs)                  # NumPy in, an action in the env's bounds out
```
{reads}
## Train it again

```bash
python train.py --config {CONFIG}          # the resolved config of the run (seed {config.seed})
```

Files: `{WEIGHTS}` (the actor{" and its observation normalization" if "obs_normalizer" in payload else ""}),
`{CONFIG}`, `{METADATA}` (what rebuilds the policy), `{EVALUATION}`, and `{HASHES}`, which `load_policy` checks.
"""


def read_folder(folder: Path) -> dict:
    """What `load_policy` needs, from a model folder, after checking every file against SHA256SUMS: the same
    fields as a checkpoint's payload."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (folder / HASHES).is_file():
        raise UserError(f"{folder} has no {HASHES}; a pathwise model folder lists the hash of each of its files.")
    listed = {}
    for line in (folder / HASHES).read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name in REQUIRED:
        if name not in listed or not (folder / name).is_file():
            raise UserError(f"{folder} is missing {name}; the folder is incomplete.")
    for name, digest in listed.items():
        if not (folder / name).is_file():
            raise UserError(f"{folder} is missing {name}, which its {HASHES} lists.")
        if _sha256(folder / name) != digest:
            raise UserError(f"{folder / name} does not match its hash in {HASHES}: it changed after the export, "
                            "and was not loaded.")
    try:
        metadata = json.loads((folder / METADATA).read_text())
        tensors = load_file(folder / WEIGHTS)
    except (json.JSONDecodeError, SafetensorError, OSError) as e:
        raise UserError(f"{folder} could not be read ({type(e).__name__}).") from None
    payload = {"agent": metadata["agent"], "env_id": metadata["env_id"], "env_steps": metadata["env_steps"],
               "spaces": metadata["spaces"], "config": yaml.safe_load((folder / CONFIG).read_text()),
               "agent_state": {"actor": {k.removeprefix("actor."): v for k, v in tensors.items()
                                         if k.startswith("actor.")}}}
    normalizer = {k.removeprefix("obs_normalizer."): v for k, v in tensors.items() if k.startswith("obs_normalizer.")}
    if normalizer:
        payload["obs_normalizer"] = normalizer
    return payload


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise UserError('the Hugging Face Hub needs huggingface_hub: pip install "pathwise-rl[hub]" (or -e ".[hub]" '
                        "in a checkout).") from None
    return huggingface_hub


def push(folder: Path, repo_id: str, api=None) -> str:
    """Upload the model folder to the Hub repository `repo_id` (made if missing); its URL."""
    hub = _hub()
    api = api or hub.HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=f"pathwise: {folder.name}")
    except Exception as e:  # network, authentication, permissions: the user needs the one sentence
        raise UserError(f"could not upload {folder} to {repo_id} on the Hugging Face Hub ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else 'no message'}).") from None
    return f"https://huggingface.co/{repo_id}"


def download(name: str, snapshot_download=None) -> Path:
    """The local folder of `hf://ORG/REPO`, downloaded (or taken from the local cache)."""
    repo_id = name.removeprefix(HUB_PREFIX)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserError(f"{name} is not a Hub model name; write hf://ORG/REPO.")
    snapshot_download = snapshot_download or _hub().snapshot_download
    try:
        return Path(snapshot_download(repo_id=repo_id))
    except Exception as e:  # offline, unknown repository, no permission
        raise UserError(f"could not download {repo_id} from the Hugging Face Hub ({type(e).__name__}); check the "
                        "name and the network, or give a local folder.") from None
