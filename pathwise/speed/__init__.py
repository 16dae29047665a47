"""The speed layer: everything that exists only to make training faster, applied to an agent from outside.

A reader of the math (agents/) can skip this package. Where a run is built, `plan_speed` decides what pays on the
machine at hand (bf16, torch.compile, threads, the fast kernels, CUDA graphs) and `accelerate(agent, plan)` puts
it in place; without it, an agent trains as written, through torch's public API. Every choice is made from what
the machine can do and what the run will do, and told in one line (`Plan.summary`). The measurements behind each
choice, by CPU and torch version: docs/performance.md.

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

from pathwise.agents.scaffold import optimizers
from pathwise.speed import kernels, machine
from pathwise.speed.optim import FastAdam, PlainAdam

# What torch.compile costs and saves on a CPU (benchmarks/compile_cost.py, docs/performance.md), at Pendulum-v1's
# sizes with 256-wide networks: the seconds to compile an agent's losses when inductor's cache holds none of our
# graphs, other graphs of ours (its precompiled headers with them), or these very graphs; the seconds a compiled
# update saves, by precision; then the same for acting, per env step. The most cost and the least saving over the
# CPUs measured (an Intel Xeon with AMX, and the same held to AVX2).
COMPILE_COST_S = {"sac": (19, 12, 4), "tqc": (19, 13, 4), "td3": (21, 14, 4), "crossq": (28, 21, 5)}
UPDATE_SAVES_S = {("sac", "fp32"): 1.2e-3, ("sac", "bf16"): 2.2e-3, ("tqc", "fp32"): 2.5e-3,
                  ("tqc", "bf16"): 3.9e-3, ("crossq", "fp32"): 1.4e-3, ("crossq", "bf16"): 3.1e-3,
                  ("td3", "fp32"): 0.1e-3, ("td3", "bf16"): 1.3e-3}
ACT_COST_S = (2.1, 2.1, 0.3)
ACT_SAVES_S = {"sac": 20e-6, "tqc": 15e-6, "td3": 3e-6, "crossq": 56e-6}
CACHE_STATES = ("holds none of our graphs", "holds other graphs of ours", "holds these graphs")
# Below this width, eager bf16 saves nothing on a CPU with native bf16: autocast's casts cost what the matmuls
# gain (256-wide networks); from it on, it pays (512-wide: SAC's update 1.8x faster, CrossQ's 1.4x).
BF16_EAGER_WIDTH = 512
# How much slower an update runs in bf16 than in float32 on a CPU without native bf16 (SAC at Pendulum sizes, an
# Intel Xeon held to AVX2): the one sentence an explicit --precision bf16 gets there.
EMULATED_BF16_SLOWDOWN = 25


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run does for speed, and why (one short reason per choice, for the run's log)."""

    device: torch.device
    precision: str  # "fp32" or "bf16"
    compile: bool  # the losses
    cuda_graph: bool
    threads: int  # torch's CPU threads at the start (machine.Threads may change them at each log)
    fast_kernels: bool  # the kernels in `kernels` and FastAdam: on a CPU, where torch has the ops
    reasons: dict[str, str]
    warnings: tuple[str, ...] = ()
    compile_act: bool = False  # acting too (a CPU only)
    marker: Path | None = None  # touched once a compile has run: see compile_marker

    @classmethod
    def of(cls, device: torch.device | str, precision: str = "fp32", compile: bool = False, cuda_graph: bool = False,
           fast_kernels: bool | None = None) -> "Plan":
        """A plan given outright (tests, benchmarks): the fast kernels wherever they would run by default; acting
        compiled with the losses on a CPU."""
        device = torch.device(device)
        fast = device.type == "cpu" and has_private_ops() if fast_kernels is None else fast_kernels
        return cls(device, precision, compile, cuda_graph, torch.get_num_threads(), fast,
                   {"precision": "given", "compile": "given", "threads": "as set"},
                   compile_act=compile and device.type == "cpu")

    def summary(self) -> str:
        graphs = ", CUDA graphs" if self.cuda_graph else ""
        return (f"Speed: {self.precision} ({self.reasons['precision']}), {'compiled' if self.compile else 'eager'} "
                f"({self.reasons['compile']}){graphs}, {self.reasons['threads']}.")

    def as_dict(self) -> dict:
        """What the run's `auto` settings resolved to, for its checkpoints and logs."""
        return {"precision": self.precision, "compile": self.compile, "compile_act": self.compile_act,
                "cuda_graph": self.cuda_graph, "threads": self.threads, "fast_kernels": self.fast_kernels,
                "reasons": dict(self.reasons)}


def has_private_ops() -> bool:
    """Whether the installed torch has the private ops the fast path calls (the tested releases: pyproject.toml)."""
    return all(hasattr(torch, op) for op in ("_fused_adam_", "_foreach_add_", "_foreach_sub_"))


def compile_marker(agent_name: str, precision: str, shapes: tuple) -> Path:
    """A file in inductor's cache directory that says this run's graphs were compiled there before (so their
    compile is a cache hit); it goes when the cache goes. Its name starts with the torch version and the kernels'
    instruction set, which other graphs of ours must share for their precompiled headers to serve."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    prefix = f"{torch.__version__}-{torch.backends.cpu.get_cpu_capability()}"
    digest = hashlib.sha256(repr((agent_name, precision, shapes)).encode()).hexdigest()[:16]
    return Path(cache_dir()) / "pathwise" / f"{prefix}-{digest}"


def cache_state(marker: Path) -> int:
    """What inductor's cache holds for a run of `marker`: an index into CACHE_STATES and the cost tables."""
    if marker.exists():
        return 2
    prefix = marker.name.rsplit("-", 1)[0]
    return 1 if marker.parent.is_dir() and any(marker.parent.glob(f"{prefix}-*")) else 0


def widest(section) -> int:
    """The widest hidden layer of an agent's networks, from its config section."""
    return max((w for f in dataclasses.fields(section) if f.name.endswith("hidden_sizes")
                for w in getattr(section, f.name)), default=0)


def _compile(asked: bool | None, device: torch.device, name: str, precision: str, updates: int,
             state: int) -> tuple[bool, str, list[str]]:
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
    if (name, precision) not in UPDATE_SAVES_S:
        return False, f"{name} in {precision} not measured compiled", []
    needed = int(COMPILE_COST_S[name][state] / UPDATE_SAVES_S[name, precision])
    if updates < needed:
        return False, f"{updates:,} updates would not repay the compile: inductor's cache {CACHE_STATES[state]}, " \
                      f"about {needed:,} needed", []
    return True, f"{updates:,} updates repay it: inductor's cache {CACHE_STATES[state]}", []


def _precision(asked: str, device: torch.device) -> tuple[str, str, list[str]]:
    """(precision, why, warnings) for `asked` (auto, fp32 or bf16), if the run is compiled."""
    if device.type != "cpu":
        return ("fp32", "bf16 not measured on a GPU", []) if asked == "auto" else (asked, "asked for", [])
    native, kind = machine.native_bf16()
    if asked == "auto":
        return ("bf16", f"native bf16 matmuls: {kind}", []) if native else ("fp32", kind, [])
    if asked == "bf16" and not native:
        return asked, "asked for", [
            f"--precision bf16 on a CPU without native bf16 matmuls ({kind}): they are emulated, and an update runs "
            f"about {EMULATED_BF16_SLOWDOWN} times slower than in float32; --precision auto (the default) picks "
            "float32 here."]
    return asked, "asked for", []


def plan_speed(config, device: torch.device, updates: int, steps: int, shapes: tuple,
               threads: machine.Threads) -> Plan:
    """What pays for this run (`config`, a pathwise Config) on `device`, which will make `updates` gradient updates
    and act `steps` times (env steps over action_repeat) on networks of `shapes` (observation and action sizes),
    with `threads`."""
    name = config.agent.name
    precision, precision_why, warnings = _precision(config.precision, device)
    marker = compile_marker(name, precision, shapes)
    state = cache_state(marker)
    compile_, compile_why, more = _compile(config.compile, device, name, precision, updates, state)
    if config.precision == "auto" and precision == "bf16" and not compile_ and widest(config.agent) < BF16_EAGER_WIDTH:
        precision, precision_why = "fp32", f"{precision_why}, but eager at this width bf16 would not pay"
    compile_act = compile_ and device.type == "cpu" and steps * ACT_SAVES_S.get(name, 0.0) > ACT_COST_S[state]
    reasons = {"precision": precision_why, "compile": compile_why, "threads": threads.reason}
    return Plan(device, precision, compile_, config.cuda_graph, threads.count,
                device.type == "cpu" and has_private_ops(), reasons, tuple(warnings + more), compile_act, marker)


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
    elif plan.compile_act:
        agent.act = Compiled(agent.act, plan.device)
