import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def benchmarks(name: str, monkeypatch):
    """(benchmarks/<name>.py, benchmarks/mujoco.py) as modules. The scripts import benchmarks/mujoco.py as `mujoco`,
    MuJoCo's own name, so that module stands in for it, and their additions to sys.path stand, only while the
    script is imported."""
    def load(script: str):
        spec = importlib.util.spec_from_file_location(f"benchmark_{script}", ROOT / "benchmarks" / f"{script}.py")
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        return loaded

    with monkeypatch.context() as patch:
        patch.setattr(sys, "path", list(sys.path))
        bench = load("mujoco")
        patch.setitem(sys.modules, "mujoco", bench)
        return (bench if name == "mujoco" else load(name)), bench


def test_mujoco_benchmark_refuses_an_unknown_variant_before_running_anything():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mujoco.py"), "--agents", "se-v4obs-se-catlinf",
                             "--envs", "Ant-v5", "--steps", "1000"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no agent or variant named se-v4obs-se-catlinf" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (ROOT / "benchmarks" / "results" / "mujoco" / "1k").exists()


def test_every_named_variant_of_the_benchmarks_is_flags_train_py_takes(monkeypatch):
    from pathwise.cli import parse_args

    for script in ("mujoco", "goals"):
        for name, flags in benchmarks(script, monkeypatch)[0].VARIANTS.items():
            try:
                config, _, _ = parse_args(["--env", "Pendulum-v1", *flags, "--wandb", "disabled"])
            except SystemExit:
                pytest.fail(f"benchmarks/{script}.py's variant {name} is not flags train.py takes: {flags}")
            assert config.agent.name == flags[flags.index("--agent") + 1], name


def test_the_dmc_table_says_which_tasks_stand_within_one_standard_error_of_mr_q(monkeypatch, tmp_path):
    dmc, mujoco = benchmarks("dmc", monkeypatch)
    monkeypatch.setattr(mujoco, "RESULTS", tmp_path)
    finals = {"cartpole-swingup": [860, 840], "walker-walk": [700, 720]}  # MR.Q: 853 +- 2 and 891 +- 26
    for task, values in finals.items():
        for seed, value in enumerate(values, 1):
            run = mujoco.run_dir(dmc.env_id(task), "recipe", seed, 100_000)
            run.mkdir(parents=True)
            (run / "evaluations.csv").write_text(f"env_steps,return_mean\n50000,10\n100000,{value}\n")
    rows = {line.split(" | ")[0].strip("| "): line for line in dmc.table("recipe", [1, 2]).splitlines()[2:]}
    assert rows["cartpole-swingup"].startswith("| cartpole-swingup | 2 | 850 +- 10 | 840 |")
    assert rows["cartpole-swingup"].endswith("| -3 | yes |")  # 3 under, the standard errors combined about 10
    assert rows["walker-walk"].endswith("| -181 | no |")
    assert rows["cheetah-run"].startswith("| cheetah-run | 0 | - |")


def test_a_stopped_benchmark_stops_its_runs_and_starts_no_more(monkeypatch, tmp_path):
    import threading
    import time

    bench = benchmarks("mujoco", monkeypatch)[0]
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    lines = []
    worker = threading.Thread(target=lambda: lines.append(bench.timed_run("a run", sleeper, tmp_path, {}, False)))
    worker.start()
    deadline = time.monotonic() + 60
    while not bench.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    (proc,) = bench.RUNNING
    bench.stop_runs()  # what SIGTERM calls
    worker.join(timeout=60)
    assert not worker.is_alive() and proc.poll() is not None  # the run was stopped, not left behind
    assert lines == ["a run: STOPPED (SIGTERM; rerun the same command to run it again)"]
    assert bench.timed_run("the next", sleeper, tmp_path, {}, False) == "the next: not started (stopped)"
    assert not bench.RUNNING and not (tmp_path / "wall_seconds.txt").exists()
