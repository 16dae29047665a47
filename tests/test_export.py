"""Policies that leave Python: the ONNX export, run in onnxruntime without torch or pathwise."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from pathwise import export_policy, load_policy
from pathwise.agents.crossq import CrossQConfig
from pathwise.agents.sac import SACConfig
from pathwise.agents.td3 import TD3Config
from pathwise.agents.tqc import TQCConfig
from pathwise.errors import UserError
from pathwise.run import train

SECTIONS = {"sac": SACConfig(hidden_sizes=(16, 16)), "td3": TD3Config(hidden_sizes=(16, 16)),
            "crossq": CrossQConfig(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(32, 32)),
            "tqc": TQCConfig(hidden_sizes=(16, 16), num_quantiles=5),
            "sac-residual": SACConfig(hidden_sizes=(16, 16), network="residual")}


@pytest.mark.parametrize("agent", list(SECTIONS))
@pytest.mark.slow
def test_the_onnx_export_acts_as_load_policy_does_for_every_agent(tiny, tmp_path, agent):
    ort = pytest.importorskip("onnxruntime")
    train(tiny(agent=SECTIONS[agent], normalize_obs=agent != "td3", total_steps=300))
    exported = subprocess.run([sys.executable, str(ROOT / "export.py"), str(tmp_path / "run"), "-o",
                               str(tmp_path / "policy.onnx")], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert exported.returncode == 0 and "(onnx)" in exported.stdout, exported.stderr
    policy = load_policy(tmp_path / "run")
    obs = np.random.default_rng(3).normal(size=(7, 3)).astype(np.float32) * 3
    np.save(tmp_path / "obs.npy", obs)
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"))
    for n in (1, 7):  # any batch size
        np.testing.assert_allclose(session.run(None, {"obs": obs[:n]})[0], policy.act(obs[:n]), rtol=1e-5,
                                   atol=1e-5)
    # The file needs neither torch nor pathwise: onnxruntime and NumPy alone, as README shows.
    code = ("import sys\n"
            "sys.modules['torch'] = sys.modules['pathwise'] = None\n"
            "import numpy as np, onnxruntime as ort\n"
            "session = ort.InferenceSession('policy.onnx')\n"
            "np.save('actions.npy', session.run(None, {'obs': np.load('obs.npy')})[0])\n")
    ran = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    np.testing.assert_allclose(np.load(tmp_path / "actions.npy"), policy.act(obs), rtol=1e-5, atol=1e-5)


def test_an_onnx_export_that_cannot_be_made_gets_one_sentence(tiny, tmp_path, monkeypatch):
    train(tiny())
    policy = load_policy(tmp_path / "run")

    def unsupported(*args, **kwargs):
        raise RuntimeError("an operator ONNX has no equivalent for\nand its long story")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(UserError, match=r"could not be exported to ONNX \(RuntimeError: an operator ONNX has no "
                                        r"equivalent for\); the torch.export format"):
        export_policy(policy, tmp_path / "policy.onnx", "onnx")
    assert not list(tmp_path.glob("policy*.onnx"))  # nothing half-written is left
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as without the onnx extra
    with pytest.raises(UserError, match=r"ONNX export needs onnx and onnxscript: pip install"):
        export_policy(policy, tmp_path / "policy.onnx", "onnx")
    with pytest.raises(UserError, match="export format 'tflite' is not one of pt2, onnx"):
        export_policy(policy, tmp_path / "policy.tflite", "tflite")


def export_main(*args):
    from pathwise.commands.export import main

    return main([str(a) for a in args])


def test_a_model_folder_round_trips_and_is_checked_against_its_hashes(tiny, tmp_path, capsys):
    import json

    import yaml

    train(tiny(normalize_obs=True, video_every=300))
    folder = tmp_path / "folder"
    assert export_main(tmp_path / "run", "--hub-folder", folder, "--episodes", 2) == 0
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.yaml", "policy.json", "evaluation.json", "README.md", "replay.mp4",
            "SHA256SUMS"} == names
    card = (folder / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert metadata["library_name"] == "pathwise" and {"sac", "Pendulum-v1"} <= set(metadata["tags"])
    result = metadata["model-index"][0]["results"][0]["metrics"][0]
    assert result["value"] == f"{evaluation['return_mean']:.2f} +/- {evaluation['return_std']:.2f}"
    assert "python train.py --config config.yaml" in card and evaluation["episodes"] == 2
    assert yaml.safe_load((folder / "config.yaml").read_text())["run_dir"] is None

    obs = np.random.default_rng(4).normal(size=(5, 3)).astype(np.float32)
    from_folder, from_run = load_policy(folder), load_policy(tmp_path / "run")
    np.testing.assert_array_equal(from_folder.act(obs), from_run.act(obs))  # the normalization travels too
    assert (from_folder.env_id, from_folder.env_steps) == ("Pendulum-v1", 300)
    evaluated = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(folder), "--episodes", "2",
                                "--json"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["mean_return"] == pytest.approx(evaluation["return_mean"])

    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="model.safetensors does not match its hash in SHA256SUMS"):
        load_policy(folder)
    (folder / "config.yaml").unlink()
    with pytest.raises(UserError, match="is missing config.yaml"):
        load_policy(folder)
    assert export_main(tmp_path / "run", "--hub-folder", tmp_path / "run") == 2  # not over a run directory
    assert "is not a pathwise model folder" in capsys.readouterr().err


class StandInHub:
    """Records what would go to the Hub, and keeps it in a local folder instead of the network."""

    def __init__(self, root):
        self.root, self.calls = root, []

    def create_repo(self, repo_id, exist_ok=False):
        self.calls.append(("create_repo", repo_id, exist_ok))

    def upload_folder(self, repo_id, folder_path, commit_message=None):
        self.calls.append(("upload_folder", repo_id, folder_path))
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)

    def snapshot_download(self, repo_id):
        self.calls.append(("snapshot_download", repo_id))
        return str(self.root / repo_id)


def test_push_to_hub_and_load_from_hf_go_through_huggingface_hub(tiny, tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    stand_in = StandInHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: stand_in)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", stand_in.snapshot_download)
    train(tiny())
    assert export_main(tmp_path / "run", "--hub-folder", tmp_path / "folder", "--episodes", 1,
                       "--push-to-hub", "me/pendulum-sac") == 0
    assert stand_in.calls == [("create_repo", "me/pendulum-sac", True),
                              ("upload_folder", "me/pendulum-sac", str(tmp_path / "folder"))]
    policy = load_policy("hf://me/pendulum-sac")
    obs = np.zeros((1, 3), np.float32)
    np.testing.assert_array_equal(policy.act(obs), load_policy(tmp_path / "run").act(obs))
    with pytest.raises(UserError, match="is not a Hub model name; write hf://ORG/REPO"):
        load_policy("hf://just-a-name")


def test_an_hf_name_without_network_gets_one_sentence(tmp_path):
    pytest.importorskip("huggingface_hub")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "hf://someone/some-policy"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "could not download someone/some-policy from the Hugging Face Hub" in result.stderr
