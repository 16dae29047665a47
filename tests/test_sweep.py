"""Sweeps: the sweep file, the configurations, and sweep.py on an embedded Ray (a full sweep with a failing trial,
its table and best config fed back to train.py, and an interrupted sweep resumed)."""

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pathwise.errors import UserError
from pathwise.sweep import configurations, load_sweep

ROOT = Path(__file__).resolve().parent.parent
TINY_BASE = {"env": "Pendulum-v1", "learning_starts": 100, "batch_size": 32, "eval_episodes": 1, "wandb": "offline",
             "sac": {"hidden_sizes": [16, 16]}}


def sweep_file(tmp_path, **fields) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "test", "base": TINY_BASE, **fields}))
    return path


def script(name, *args, cwd, **kw):
    return subprocess.run([sys.executable, str(ROOT / name), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


@pytest.mark.parametrize("fields, message", [
    ({"space": {"sac.actor_lrr": {"choice": [1]}}}, "names 'sac.actor_lrr', which is not a config key"),
    ({"space": {"sac.tau": {"normal": [0, 1]}}}, "must be one of grid, choice, uniform, loguniform, randint"),
    ({"space": {"sac.tau": {"uniform": [0.1]}}}, "uniform takes two bounds"),
    ({"space": {"sac.actor_lr": {"loguniform": [0, 1]}}}, "needs low < high and low > 0"),
    ({"space": {"batch_size": {"choice": [32, "big"]}}}, "batch_size in .* must be an integer"),
    ({"space": {"seed": {"grid": [1, 2]}}}, "not a config key a sweep can vary"),
    ({"searcher": "bayes"}, "searcher .* must be one of random, optuna"),
    ({"searcher": "optuna", "space": {"sac.tau": {"grid": [0.1, 0.2]}}}, "optuna searcher takes no grid"),
    ({"asha": {"patience": 3}}, "asha .* takes grace_period"),
    ({"asha": {"grace_period": "soon"}}, "asha.grace_period in .* must be an integer"),
    ({"resources": [1]}, "resources in .* must be a mapping"),
    ({"space": {"agent": {"grid": ["sac", "td3"]}}}, "names 'agent': a sweep varies one agent's settings"),
    ({"space": {"batch_size": {"uniform": [32, 256]}}}, "uniform draws real numbers, but batch_size is not"),
    ({"space": {"sac.tau": {"randint": [0, 1]}}}, "randint draws integers, but sac.tau is not"),
    ({"colour": "red"}, "unknown key 'colour'"),
])
def test_a_bad_sweep_file_gets_one_sentence(tmp_path, fields, message):
    with pytest.raises(UserError, match=message):
        load_sweep(sweep_file(tmp_path, **fields))


def test_a_bad_base_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": {**TINY_BASE, "batch_sise": 3}}))
    with pytest.raises(UserError, match="unknown key 'batch_sise'.*did you mean 'batch_size'"):
        load_sweep(path)
    path.write_text(yaml.safe_dump({"base": {**TINY_BASE, "seed": 3}}))
    with pytest.raises(UserError, match="sets seed, which the sweep sets for each trial"):
        load_sweep(path)


def test_configurations_cross_the_grid_with_fresh_draws_and_repeat_exactly(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, num_samples=3, space={
        "sac.tau": {"grid": [0.005, 0.02]}, "sac.actor_lr": {"loguniform": [1e-4, 1e-2]},
        "sac.num_critics": {"randint": [2, 3]}, "batch_size": {"choice": [32, 64]}}))
    configs = configurations(sweep)
    assert len(configs) == 6 and configs == configurations(sweep)
    assert sorted(c["sac.tau"] for c in configs) == [0.005] * 3 + [0.02] * 3
    assert all(1e-4 <= c["sac.actor_lr"] <= 1e-2 and c["sac.num_critics"] in (2, 3) for c in configs)
    assert len({c["sac.actor_lr"] for c in configs}) == 6  # each configuration draws its own


def test_without_ray_sweep_py_says_how_to_install_it(tmp_path):
    code = ("import sys, runpy; sys.modules['ray'] = None; sys.argv = ['sweep.py', sys.argv[1]]; "
            f"runpy.run_path({str(ROOT / 'sweep.py')!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, str(sweep_file(tmp_path))], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "pip install -e \".[sweep]\"" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_sweep_runs_on_embedded_ray_past_a_failing_trial_and_writes_the_best_config(tmp_path):
    pytest.importorskip("ray")
    # Two configurations x two seeds; a critic learning rate of 1e30 makes one configuration diverge.
    path = sweep_file(tmp_path, seeds=[1, 2], base={**TINY_BASE, "total_steps": 300, "eval_every": 100},
                      space={"sac.critic_lr": {"grid": [1e-3, 1e30]}, "sac.tau": {"choice": [0.005, 0.01]}})
    result = script("sweep.py", path, "--sweep-dir", tmp_path / "sweep", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in (tmp_path / "sweep" / "trials.md").read_text().splitlines()[2:]]
    assert len(rows) == 4
    done = [r for r in rows if r.endswith("| done |")]
    failed = [r for r in rows if "| failed: training diverged" in r]
    assert len(done) == 2 and len(failed) == 2 and all("| 1e+30 |" in r for r in failed), rows
    assert all("| 300 |" in r for r in done)
    for seed in (1, 2):  # every trial is an ordinary run
        run = tmp_path / "sweep" / "trials" / f"c000_seed{seed}"
        assert (run / "config.yaml").is_file() and list((run / "checkpoints").glob("*.pt"))
        # Saved before its report at step 200, so that Ray stopping it there would have lost nothing.
        assert (run / "checkpoints" / "step_000000200.pt").is_file()
        assert yaml.safe_load((run / "config.yaml").read_text())["wandb_group"] == "test"
        assert list((run / "wandb").glob("offline-run-*"))
    assert (tmp_path / "sweep" / "best.png").is_file()
    best = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    assert best["sac"]["critic_lr"] == 1e-3 and best["total_steps"] == 300
    trained = script("train.py", "--config", tmp_path / "sweep" / "best.yaml", "--total-steps", "150",
                     "--wandb", "disabled", "--run-dir", tmp_path / "again", cwd=tmp_path, timeout=300)
    assert trained.returncode == 0, trained.stderr
    evaluated = script("evaluate.py", tmp_path / "sweep" / "trials" / "c000_seed1", "--episodes", "1", "--json",
                       cwd=tmp_path, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    pytest.importorskip("ray")
    path = sweep_file(tmp_path, seeds=[1, 2], space={"sac.tau": {"grid": [0.005, 0.02]}},
                      base={**TINY_BASE, "wandb": "disabled", "total_steps": 1500, "eval_every": 250,
                            "checkpoint_every": 250})
    trials = tmp_path / "sweep" / "trials"
    args = [sys.executable, str(ROOT / "sweep.py"), str(path), "--sweep-dir", str(tmp_path / "sweep"),
            "--max-concurrent", "2"]
    # Ctrl-C, as a terminal sends it to the whole process group, once one trial has finished and a later one
    # has a checkpoint but is far from finishing (one near its end could finish before the signal lands).
    sweep = subprocess.Popen(args, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 400
    while time.time() < deadline and sweep.poll() is None:
        finals = glob.glob(str(trials / "*" / "checkpoints" / "step_000001500.pt"))
        partial = [d for d in glob.glob(str(trials / "*")) if glob.glob(f"{d}/checkpoints/step_*.pt")
                   and not glob.glob(f"{d}/checkpoints/step_00000[1-9]*.pt")]  # none at step 1,000 or later
        if finals and partial:
            break
        time.sleep(0.1)
    assert sweep.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(sweep.pid, signal.SIGINT)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "--resume" in stderr, stderr[-3000:]
    finished = {Path(f).parent.parent.name: os.path.getmtime(f) for f in finals}

    result = script("sweep.py", path, "--sweep-dir", tmp_path / "sweep", "--resume", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "sweep" / "trials.md").read_text().splitlines()[2:]
    assert len(rows) == 4 and all(r.endswith("| done |") for r in rows), rows
    starts = {d.name: yaml.safe_load((d / "trial.yaml").read_text())["starts"] for d in trials.iterdir()}
    for name, mtime in finished.items():  # reported again, not trained again
        assert starts[name] == [0, 1500]
        assert os.path.getmtime(trials / name / "checkpoints" / "step_000001500.pt") == mtime
    resumed = [s for s in starts.values() if len(s) == 2 and 0 < s[1] < 1500]
    assert resumed, starts  # the interrupted trial went on from its checkpoint


@pytest.mark.slow
def test_an_optuna_sweep_runs_each_suggestion_once_per_seed(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    path = sweep_file(tmp_path, seeds=[1, 2], searcher="optuna", space={"sac.actor_lr": {"loguniform": [1e-4, 1e-2]}},
                      base={**TINY_BASE, "wandb": "disabled", "total_steps": 200, "eval_every": 100})
    result = script("sweep.py", path, "--sweep-dir", tmp_path / "sweep", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r.split("|")[1:-1] for r in (tmp_path / "sweep" / "trials.md").read_text().splitlines()[2:]]
    assert len(rows) == 2 and all(r[-1].strip() == "done" for r in rows), rows
    assert rows[0][1] == rows[1][1] and {r[2].strip() for r in rows} == {"1", "2"}  # one suggestion, both seeds
    assert yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())["sac"]["actor_lr"] == pytest.approx(
        float(rows[0][1]), rel=1e-3)
