import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mujoco_benchmark_refuses_an_unknown_variant_before_running_anything():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mujoco.py"), "--agents", "se-v4obs-se-catlinf",
                             "--envs", "Ant-v5", "--steps", "1000"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no agent or variant named se-v4obs-se-catlinf" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (ROOT / "benchmarks" / "results" / "mujoco" / "1k").exists()


def test_every_named_variant_of_the_benchmarks_is_flags_train_py_takes(monkeypatch):
    import importlib

    import pytest

    from pathwise.cli import parse_args

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    for script in ("mujoco", "goals"):
        for name, flags in importlib.import_module(script).VARIANTS.items():
            try:
                config, _, _ = parse_args(["--env", "Pendulum-v1", *flags, "--wandb", "disabled"])
            except SystemExit:
                pytest.fail(f"benchmarks/{script}.py's variant {name} is not flags train.py takes: {flags}")
            assert config.agent.name == flags[flags.index("--agent") + 1], name
