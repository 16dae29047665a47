"""What this machine's CPU can do, and the process-wide settings that make small networks train fast on it."""

import ctypes
import ctypes.util
import math
import os
import time
from pathlib import Path

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def native_bf16() -> tuple[bool, str]:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX or AVX512-BF16), as torch will run them,
    and its name for the run's log. Asked of torch and oneDNN, not read from the CPU's model name: a process held
    to an older instruction set (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) is answered as that CPU would be. Without
    native bf16, oneDNN emulates it, many times slower than float32."""
    capabilities = torch.cpu.get_capabilities()
    isa = torch.backends.cpu.get_cpu_capability()  # the kernels ATen dispatches to: DEFAULT, AVX2, AVX512, ...
    kind = "AMX" if capabilities.get("amx_bf16") else "AVX512-BF16" if capabilities.get("avx512_bf16") else None
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        onednn = False
    if kind and onednn and isa not in ("DEFAULT", "AVX2"):
        return True, kind
    return False, f"{isa} without native bf16" if not kind else f"{kind} held to {isa}"


def has_cpp_compiler() -> bool:
    """torch.compile on a CPU builds C++ kernels with g++ or clang++."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception:  # inductor's own error when its search finds none
        return False
    return True


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, within a cgroup's CPU quota where one is set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


class CPULoad:
    """How many CPUs other processes kept busy since the last reading: the machine's busy time (/proc/stat, the
    time of niced processes left out: they yield to this one) less this process's own. None where /proc/stat is
    not there to read (other systems than Linux)."""

    def __init__(self):
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal: steal is time the hypervisor gave to other machines
        user, _nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        hz = os.sysconf("SC_CLK_TCK")
        own = sum(os.times()[:2])
        return time.monotonic(), (user + system + irq + softirq + steal) / hz, own

    def others_busy(self) -> float | None:
        """CPUs' worth of other processes' work since the last call (or since this object was made)."""
        now = self._read()
        if now is None or self._last is None:
            return None
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        if t1 - t0 < 0.2:  # too short a window to tell
            return None
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


# Read when this module is imported, early in a training process: the window until the run chooses its threads
# (imports, the envs made) tells how busy the other processes keep the CPUs, without waiting for it.
PROCESS_LOAD = CPULoad()


def fair_threads(cpus: int, others_busy: float | None) -> int:
    """Threads for this process: the CPUs it may use less those other processes keep busy (a CPU counts as taken
    from about three quarters busy), at least one. Oversubscribed, OpenMP's waiting threads spin against each
    other and a run can go ten times slower."""
    if others_busy is None:
        return cpus
    return max(1, min(cpus, cpus - math.floor(others_busy + 0.25)))


def configure_cpu(threads: int) -> None:
    """Set once, before the process's first parallel torch op: OpenMP's worker threads take the floating-point
    mode of the thread that starts them, when they start, and keep it.

    Flushing denormals (below 1.2e-38) to zero matters for Adam: the moments of weights whose gradient is often
    zero (dead ReLU units) decay geometrically into the denormal range, where x86 CPUs compute each operation
    in a slow microcode path (docs/performance.md). GPUs compute on denormals at full speed. A process that ran
    parallel torch ops before this call flushes on its main thread only.
    """
    torch.set_flush_denormal(True)
    keep_freed_memory()
    torch.set_num_threads(threads)


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every allocation below 32 MiB from its heap and keep freed memory there, rather than
    map fresh pages from the kernel and give them back: an update allocates and frees the same activations each
    time (CrossQ's joint batch: 1 MiB per layer), and first touches of fresh pages cost more than the arithmetic.
    Returns whether the settings took (False where the C library is not glibc, e.g. on macOS)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    # Arrays of 32 MiB and more (a replay buffer's) are still mapped on their own and returned when freed.
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


class Threads:
    """torch's CPU threads for a run: the count asked for (--threads), or the CPUs that other processes leave free,
    read again at each log (`adjust`), so that a run started beside this one gets its share and neither collapses.
    Where the system does not say how busy its CPUs are, all of them, and the reason says what to pass instead."""

    def __init__(self, asked: int, load: CPULoad = PROCESS_LOAD):
        self.asked, self.cpus = asked, usable_cpus()
        self.load, self.known = (None, True) if asked else (load, False)
        self.count = asked or self._free(wait=True)

    def _free(self, wait: bool = False) -> int:
        busy = self.load.others_busy()
        if busy is None and wait and self.load._last is not None:  # a window too short to tell: make it long enough
            time.sleep(0.25)
            busy = self.load.others_busy()
        self.known = busy is not None
        return fair_threads(self.cpus, busy)

    @property
    def reason(self) -> str:
        if self.asked:
            return f"{self.count} thread{'s' * (self.count != 1)} (--threads)"
        if not self.known:
            return (f"{self.count} thread{'s' * (self.count != 1)}, one per CPU (this system does not say how busy "
                    "they are: beside other busy processes, pass --threads with the CPUs left free)")
        return f"{self.count} of {self.cpus} CPUs free"

    def adjust(self) -> None:
        if self.asked or not self.known:
            return
        count = self._free()
        if count != self.count:
            torch.set_num_threads(count)
            self.count = count
