"""The speed layer: everything that exists only to make training faster, applied to an agent from outside.

A reader of the math (agents/) can skip this package. Where a run is built, `plan_speed` decides what pays on the
machine at hand (bf16, torch.compile, threads, the fast kernels, CUDA graphs) and `accelerate(agent, plan)` puts
it in place; without it, an agent trains as written, through torch's public API. Every choice is made by what the
machine can do and what the run will do, and told in one line (`Plan.summary`). The timings behind each choice,
by CPU and torch version: docs/performance.md.

What it changes, and where:
- the layers with a fast kernel (batch renormalization, ReLU; under torch.compile on a CPU, the linear layers
  written for inductor) and TQC's quantile loss: `kernels`;
- Adam stepped by its fused kernel directly on a CPU, or capturable for CUDA graphs: `optim`;
- the agent's `loss_methods` under bf16 autocast and torch.compile (and acting compiled on a CPU);
- the agent's `step_methods` and acting replayed from CUDA graphs: `cuda_graphs`;
- process-wide CPU settings (threads, denormals, malloc): `machine`.
"""

import dataclasses
import functools
import hashlib
import sys
from pathlib import Path

import torch

from agents.scaffold import optimizers
from pathwise.speed import kernels, machine
from pathwise.speed.optim import FastAdam, PlainAdam

# The torch releases whose private ops this layer calls (torch._fused_adam_, torch._foreach_add_) were tested
# with: CI on a CPU runs 2.13, the last GPU runs 2.11. Outside this range, or where an op is missing, the public
# path runs instead.
TESTED_TORCH = ((2, 11), (2, 13))

# Agents whose compiled update was measured faster than their eager one on a CPU (docs/performance.md); TD3's was
# not. Compiling pays only when the run's updates repay the compile: its seconds (with inductor's cache of earlier
# compiles empty, or holding this very graph) over the seconds it saves an update, per precision.
COMPILE_SAVES_S = {("sac", "fp32"): 0.0014, ("sac", "bf16"): 0.0023, ("tqc", "fp32"): 0.0014,
                   ("tqc", "bf16"): 0.0023, ("crossq", "fp32"): 0.0014, ("crossq", "bf16"): 0.0023}
COMPILE_COST_S = {"cold": 25.0, "warm": 5.0}
# How much slower a float32 update runs in bf16 on a CPU without native bf16 (SAC at Pendulum sizes, an Intel
# Xeon held to AVX2): the one sentence an explicit --precision bf16 gets there.
EMULATED_BF16_SLOWDOWN = 25


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run does for speed, and why (one short reason per choice, for the run's log)."""

    device: torch.device
    precision: str  # "fp32" or "bf16"
    compile: bool
    cuda_graph: bool
    threads: int  # torch's CPU threads at the start (machine.Threads may change them at each log)
    fast_kernels: bool  # the kernels in `kernels` and FastAdam: on a CPU, where torch has the ops
    reasons: dict[str, str]
    warnings: tuple[str, ...] = ()
    marker: Path | None = None  # touched once a compile has run: see compile_marker

    @classmethod
    def of(cls, device: torch.device | str, precision: str = "fp32", compile: bool = False, cuda_graph: bool = False,
           fast_kernels: bool | None = None) -> "Plan":
        """A plan given outright (tests, benchmarks): the fast kernels wherever they would run by default."""
        device = torch.device(device)
        fast = device.type == "cpu" and torch_tested() if fast_kernels is None else fast_kernels
        return cls(device, precision, compile, cuda_graph, torch.get_num_threads(), fast,
                   {"precision": "given", "compile": "given", "threads": "as set"})

    def summary(self) -> str:
        graphs = ", CUDA graphs" if self.cuda_graph else ""
        return (f"Speed: {self.precision} ({self.reasons['precision']}), {'compiled' if self.compile else 'eager'} "
                f"({self.reasons['compile']}){graphs}, {self.reasons['threads']}.")

    def as_dict(self) -> dict:
        """What the run's `auto` settings resolved to, for its checkpoints and logs."""
        return {"precision": self.precision, "compile": self.compile, "cuda_graph": self.cuda_graph,
                "threads": self.threads, "fast_kernels": self.fast_kernels, "reasons": dict(self.reasons)}


def torch_tested() -> bool:
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    return TESTED_TORCH[0] <= version <= TESTED_TORCH[1] and hasattr(torch, "_fused_adam_")


def _precision(asked: str, device: torch.device) -> tuple[str, str, list[str]]:
    """(precision, why, warnings) for `asked`: auto, fp32 or bf16."""
    if device.type != "cpu":
        if asked == "auto":
            return "fp32", "bf16 not measured on a GPU", []
        return asked, "asked for", []
    native, kind = machine.native_bf16()
    if asked == "auto":
        return ("bf16", f"native bf16 matmuls: {kind}", []) if native else ("fp32", kind, [])
    if asked == "bf16" and not native:
        return "bf16", "asked for", [
            f"--precision bf16 on a CPU without native bf16 matmuls ({kind}): they are emulated, and an update runs "
            f"about {EMULATED_BF16_SLOWDOWN} times slower than in float32; --precision auto (the default) picks "
            "float32 here."]
    return asked, "asked for", []


def compile_marker(agent_name: str, precision: str, shapes: tuple) -> Path:
    """A file in inductor's cache directory that says this run's graphs were compiled there before (so their
    compile is a cache hit): it goes when the cache goes."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    key = repr((torch.__version__, torch.backends.cpu.get_cpu_capability(), agent_name, precision, shapes))
    return Path(cache_dir()) / "pathwise" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _compile(asked: bool | None, device: torch.device, agent_name: str, precision: str, updates: int,
             marker: Path) -> tuple[bool, str, list[str]]:
    """(compile, why, warnings) for `asked`: True, False or None (decide)."""
    if asked is False:
        return False, "--no-compile", []
    if device.type == "cpu" and not machine.has_cpp_compiler():
        if asked:
            return False, "no C++ compiler", [
                "--compile on a CPU needs a C++ compiler (g++ or clang++), and none was found: training eager."]
        return False, "no C++ compiler for torch.compile", []
    if asked:
        return True, "asked for", []
    if device.type != "cpu":
        return False, "not measured over whole runs on a GPU; --compile asks for it", []
    saves = COMPILE_SAVES_S.get((agent_name, precision))
    if saves is None:
        return False, f"{agent_name} was not measured faster compiled", []
    cache = "warm" if marker.exists() else "cold"
    needed = int(COMPILE_COST_S[cache] / saves)
    if updates < needed:
        return False, f"{updates:,} updates would not repay a {cache}-cache compile (~{needed:,})", []
    return True, f"{updates:,} updates repay a {cache}-cache compile", []


def plan_speed(config, device: torch.device, updates: int, shapes: tuple, threads: machine.Threads) -> Plan:
    """What pays for this run (`config`, a pathwise Config) on `device`, which will make `updates` gradient
    updates on networks of `shapes` (observation and action sizes), with `threads`."""
    name = config.agent.name
    precision, precision_why, warnings = _precision(config.precision, device)
    marker = compile_marker(name, precision, shapes)
    compile_, compile_why, more = _compile(config.compile, device, name, precision, updates, marker)
    warnings += more
    fast = device.type == "cpu" and torch_tested()
    reasons = {"precision": precision_why, "compile": compile_why, "threads": threads.reason}
    return Plan(device, precision, compile_, config.cuda_graph, threads.count, fast, reasons, tuple(warnings),
                marker)


def autocast_bf16(fn, device: torch.device):
    """`fn` with its matmuls in bfloat16; weights, losses and optimizer state stay float32."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fn(*args, **kwargs)
    return run


class Compiled:
    """`fn` under torch.compile (a loss: its forward and, through AOTAutograd, its backward; or acting). Random draws
    fall back to eager's generator, so a compiled run samples the same numbers from the same seed; on a CPU the
    code that calls the kernels is C++ (inductor's cpp_wrapper), and the kernels take the thread count torch has
    when they run. The options are this compile's alone, not set for the process. If compiling fails, `fn` runs
    eager from then on, after one line that says why."""

    ERRORS = (torch._dynamo.exc.TorchDynamoException, torch._inductor.exc.CppCompileError, OSError)

    def __init__(self, fn, device: torch.device, marker: Path | None = None):
        options = {"fallback_random": True}
        if device.type == "cpu":
            options.update({"cpp_wrapper": True, "cpp.dynamic_threads": True})
        self.fn, self.marker = fn, marker
        self.compiled = torch.compile(fn, options=options)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except self.ERRORS as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            print(f"torch.compile failed ({type(e).__name__}: {first}); training eager.", file=sys.stderr,
                  flush=True)
            self.compiled = None
            return self.fn(*args, **kwargs)
        if self.marker is not None:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
            self.marker = None
        return out


def accelerate(agent, plan: Plan) -> None:
    """Put `plan` in place on `agent`, a newly built agent of agents/ (before or after loading its state)."""
    modules = [m for m in vars(agent).values() if isinstance(m, torch.nn.Module)]
    if plan.fast_kernels:
        kernels.swap_layers(modules, inductor=plan.compile)
        if hasattr(agent, "quantile_loss"):
            agent.quantile_loss = kernels.quantile_huber_loss
    for optimizer in optimizers(agent):
        optimizer.__class__ = FastAdam if plan.fast_kernels else PlainAdam
    for name in agent.loss_methods:
        fn = getattr(agent, name)
        if plan.precision == "bf16":
            fn = autocast_bf16(fn, plan.device)
        if plan.compile:
            fn = Compiled(fn, plan.device, plan.marker)
        setattr(agent, name, fn)
    if plan.cuda_graph:
        from pathwise.speed.cuda_graphs import use_cuda_graphs

        use_cuda_graphs(agent)
    elif plan.compile and plan.device.type == "cpu":  # acting compiled too: it runs at every env step
        agent.act = Compiled(agent.act, plan.device)
