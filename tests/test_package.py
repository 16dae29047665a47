"""The package as a user installs it: a wheel in a fresh virtual environment, far from the checkout."""

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest
import yaml
from conftest import ROOT


@pytest.mark.slow
def test_the_wheel_installed_elsewhere_trains_with_its_shipped_preset(tmp_path):
    # Built from a copy of the sources, as from a clean checkout: setuptools' build/ folder would keep files that
    # have since moved.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("agents", "envs", "pathwise", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("pathwise_rl-*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    site = next(env.glob("lib/python*/site-packages"))
    # The heavy dependencies (torch, gymnasium, ...) come from this interpreter's site-packages, read as plain
    # folders: the editable install of the checkout that lives there is not activated by them.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    # One namespace: the wheel holds pathwise alone, with the math and the envs inside it.
    assert {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()} == {"pathwise", wheel.name.split("-py")[0]
                                                                                  + ".dist-info"}
    code = ("import importlib.util, pathwise.agents.sac, pathwise.envs; "
            "print(pathwise.agents.sac.__file__, importlib.util.find_spec('agents'), importlib.util.find_spec('envs'))")
    where = subprocess.run([env / "bin" / "python", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert where.stdout.split() == [str(site / "pathwise" / "agents" / "sac.py"), "None", "None"], where.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    run = subprocess.run([env / "bin" / "pathwise-train", "--env", "HalfCheetah-v5", "--total-steps", "300",
                          "--eval-episodes", "1", "--wandb", "disabled", "--run-dir", "run"],
                         capture_output=True, text=True, cwd=work, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    config = yaml.safe_load((work / "run" / "config.yaml").read_text())
    assert config["learning_starts"] == 10_000  # from the HalfCheetah-v5 preset that ships in the wheel
    evaluated = subprocess.run([env / "bin" / "pathwise-evaluate", "run", "--episodes", "1", "--json"],
                               capture_output=True, text=True, cwd=work, timeout=600)
    assert evaluated.returncode == 0 and '"env_id": "HalfCheetah-v5"' in evaluated.stdout, evaluated.stderr
    exported = subprocess.run([env / "bin" / "pathwise-export", "run", "-o", "policy.pt2"], capture_output=True,
                              text=True, cwd=work, timeout=600)
    assert exported.returncode == 0 and (work / "policy.pt2").is_file(), exported.stderr


def test_every_preset_folder_is_packaged():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    folders = {f"pathwise.configs.{d.name}" for d in (ROOT / "configs").iterdir() if d.is_dir()}
    assert folders <= set(packages), folders - set(packages)


def test_a_second_checkout_runs_its_own_agents_and_envs_beside_an_editable_install(tmp_path):
    # The test environment has this checkout installed (editable or not); a copy of the checkout run from its own
    # top imports pathwise, pathwise.agents and pathwise.envs all from the copy, not some from the installed one.
    copy = tmp_path / "other-checkout"
    copy.mkdir()
    for part in ("pathwise", "agents", "envs"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pathwise, pathwise.agents.crossq, pathwise.envs.make; "
            "print(pathwise.__file__, pathwise.agents.crossq.__file__, pathwise.envs.make.__file__)")
    where = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(copy)) for path in where.stdout.split()), where.stdout
