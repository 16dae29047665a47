# The two commands of a fresh machine with Python >= 3.10 (README.md):
#   make train   trains SAC on Pendulum-v1 (the main job)
#   make test    runs the fast tests (CI runs them first)
#   make test-slow runs the slow tier: long runs, real signals, sweeps, compiles, the wheel (CI runs it second)
# Each makes .venv and installs what it needs the first time, torch first; later runs install nothing unless
# pyproject.toml changed. TORCH picks the torch build: make train TORCH="torch==2.13.0 --index-url URL".

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: train test test-slow

train: $(VENV)/.installed-core
	$(PY) train.py --env Pendulum-v1

test: $(VENV)/.installed-dev
	SDL_VIDEODRIVER=dummy MUJOCO_GL=egl $(PY) -m pytest -q -m "not slow"

test-slow: $(VENV)/.installed-dev
	SDL_VIDEODRIVER=dummy MUJOCO_GL=egl $(PY) -m pytest -q -m slow

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)

$(VENV)/.installed-core: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

# dev: pytest, ruff, tensorboard (to read event files); sweep: Ray Tune and optuna, which the sweep tests run.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev,sweep]"
	touch $@
