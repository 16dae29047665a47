"""Process-wide CPU settings: denormals flushed on every thread, freed memory kept in the heap."""

import platform
import subprocess
import sys

import pytest
from conftest import ROOT

from pathwise.speed.machine import keep_freed_memory

# Multiplies 2^20 denormals (1.4e-42) on two threads (one chunk each); prints how many products stayed non-zero.
PROBE = """
import sys, torch
sys.path.insert(0, {root!r})
if {train}:
    from pathwise.config import Config
    from pathwise.run import build_trainer
    build_trainer(Config(env="Pendulum-v1", threads=2, wandb="disabled", run_dir={run_dir!r}))
else:
    torch.set_num_threads(2)
# From a bit pattern: written as the float 1e-39, the denormal would already be flushed on the main thread.
x = torch.full((1 << 20,), 1000, dtype=torch.int32).view(torch.float32)
print((x * 1.0).count_nonzero().item())
"""


def probe(train: bool, run_dir) -> int:
    code = PROBE.format(root=str(ROOT), train=train, run_dir=str(run_dir))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_a_training_process_flushes_denormals_on_every_thread(tmp_path):
    # Denormal arithmetic runs in a slow microcode path on x86 (Adam's moments decay into it); every thread of
    # the training process, OpenMP's workers included, must flush them to zero.
    assert probe(train=False, run_dir=tmp_path) == 1 << 20
    assert probe(train=True, run_dir=tmp_path / "run") == 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc settings exist in glibc only")
def test_glibc_accepts_the_malloc_settings():
    assert keep_freed_memory()
    assert keep_freed_memory()  # idempotent: a second configure_cpu (a resumed run in one process) is fine
