import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import toy_envs  # noqa: E402

toy_envs.register()
torch.set_num_threads(1)


@pytest.fixture
def tiny(tmp_path):
    """Keyword overrides for a run that finishes in seconds and really updates (learning starts early)."""
    def make(**overrides):
        """`agent=` an agent's section (default: SAC with 32x32 networks), or `sac=` a dict of SAC's fields."""
        from pathwise.agents.sac import SACConfig
        from pathwise.config import Config
        sac = SACConfig(**{"hidden_sizes": (32, 32), **overrides.pop("sac", {})})
        # float32 and eager, whatever the CPU: the same numbers on every machine the tests run on
        base = dict(env="Pendulum-v1", total_steps=300, learning_starts=100, batch_size=32, buffer_size=10_000,
                    eval_every=0, eval_episodes=1, log_every=100, wandb="disabled", threads=1, precision="fp32",
                    compile=False, run_dir=str(tmp_path / "run"), agent=sac)
        return Config(**{**base, **overrides})
    return make
