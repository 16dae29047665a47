"""Policies that leave Python: the ONNX export, run in onnxruntime without torch or pathwise."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from agents.crossq import CrossQConfig
from agents.sac import SACConfig
from agents.td3 import TD3Config
from pathwise import export_policy, load_policy
from pathwise.errors import UserError
from pathwise.run import train

SECTIONS = {"sac": SACConfig(hidden_sizes=(16, 16)), "td3": TD3Config(hidden_sizes=(16, 16)),
            "crossq": CrossQConfig(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(32, 32))}


@pytest.mark.parametrize("agent", list(SECTIONS))
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
            "sys.modules['torch'] = sys.modules['agents'] = sys.modules['pathwise'] = None\n"
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
