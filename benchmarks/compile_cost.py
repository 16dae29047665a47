"""What torch.compile costs and saves on this CPU: the numbers behind the default choice to compile (pathwise/speed).

    python benchmarks/compile_cost.py                         # SAC, CrossQ-256, TQC and TD3 in each precision here
    python benchmarks/compile_cost.py --agents sac --precisions fp32
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/compile_cost.py

For each agent (Pendulum-v1 sizes: 3 observations, 1 action; 256 x 256 networks, CrossQ's critics too; batch 256)
and precision, each in a fresh process: the median eager update; the median compiled update; the seconds its first
updates take to compile (their time less as many eager updates) with inductor's cache empty (a new
TORCHINDUCTOR_CACHE_DIR: the first run on a machine), with the cache holding other graphs (after another agent's
compile: precompiled headers there) and with the cache holding these graphs (the same run again); and the same
for acting. Updates after 1,500 of warm-up, in blocks of 6 (whole
policy-delay cycles). Prints the CPU, its bf16 support and a Markdown table (docs/performance.md); bf16 runs only
where the CPU has native bf16 matmuls.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import json, statistics, sys, time, torch
sys.path.insert(0, {root!r})
from pathwise.agents.registry import AGENTS
from pathwise.agents.batch import Batch
from pathwise.speed import Plan, accelerate
from pathwise.speed.machine import configure_cpu
name, precision, compile, threads = {name!r}, {precision!r}, {compile!r}, {threads!r}
configure_cpu(threads)
widths = {{"actor_hidden_sizes": (256, 256), "critic_hidden_sizes": (256, 256)}} if name == "crossq" else \\
    {{"hidden_sizes": (256, 256)}}
torch.manual_seed(0)
agent = AGENTS[name](**widths).make_agent(3, 1, torch.device("cpu"))
accelerate(agent, Plan.of("cpu", precision, compile=compile))
g = torch.Generator().manual_seed(0)
data = [Batch(torch.randn(256, 3, generator=g), torch.rand(256, 1, generator=g) * 2 - 1, torch.randn(256, generator=g),
              torch.randn(256, 3, generator=g), torch.zeros(256), torch.full((256,), 0.99)) for _ in range(64)]
t = time.perf_counter()
for i in range(6):
    agent.update(data[i])
first = time.perf_counter() - t
t = time.perf_counter()
agent.act(data[0].obs[:1])
first_act = time.perf_counter() - t
for i in range(1500):
    agent.update(data[i % 64])
times = []
for i in range(600):
    t = time.perf_counter()
    agent.update(data[i % 64])
    times.append(time.perf_counter() - t)
acts = []
for i in range(300):
    t = time.perf_counter()
    agent.act(data[i % 64].obs[:1])
    acts.append(time.perf_counter() - t)
update = statistics.median(sum(times[i:i + 6]) / 6 for i in range(0, len(times), 6))
print(json.dumps({{"first_s": first, "first_act_s": first_act, "update_ms": update * 1e3,
                  "act_us": statistics.median(acts) * 1e6}}))
"""


def measure(name: str, precision: str, compile: bool, threads: int, cache: Path) -> dict:
    code = WORKER.format(root=str(ROOT), name=name, precision=precision, compile=compile, threads=threads)
    env = {**__import__("os").environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{name} {precision} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["sac", "crossq", "tqc", "td3"])
    parser.add_argument("--precisions", nargs="+", default=None, help="fp32, bf16 [default: bf16 where native]")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from throughput import describe_cpu

    from pathwise.speed.machine import native_bf16

    native, kind = native_bf16()
    precisions = args.precisions or (["fp32", "bf16"] if native else ["fp32"])
    cpu = describe_cpu()
    print(f"{cpu}; torch {torch.__version__}; {args.threads} threads; {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| agent | precision | eager update (ms) | compiled update (ms) | saves per update (ms) | compile, cache "
          "empty (s) | other graphs cached (s) | these cached (s) | updates to repay (empty / other / these) | "
          "acting: eager, compiled (us); its compile, empty / these (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for precision in precisions:
        for name in args.agents:
            with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as other:
                eager = measure(name, precision, False, args.threads, Path(empty) / "unused")
                cold = measure(name, precision, True, args.threads, Path(empty))
                warm = measure(name, precision, True, args.threads, Path(empty))
                # another agent's graphs first (its precompiled headers), then this one's for the first time
                measure("td3" if name != "td3" else "sac", precision, True, args.threads, Path(other))
                headers = measure(name, precision, True, args.threads, Path(other))
            saves = eager["update_ms"] - cold["update_ms"]
            # the losses' compile: the first six updates less six eager ones; acting's is timed apart
            costs = [c["first_s"] - 6 * eager["update_ms"] / 1e3 for c in (cold, headers, warm)]
            repay = " / ".join(f"{cost / (saves / 1e3):,.0f}" if saves > 0 else "never" for cost in costs)
            print(f"| {name} | {precision} | {eager['update_ms']:.2f} | {cold['update_ms']:.2f} | {saves:.2f} | "
                  f"{costs[0]:.1f} | {costs[1]:.1f} | {costs[2]:.1f} | {repay} | {eager['act_us']:.0f}, "
                  f"{cold['act_us']:.0f}; {cold['first_act_s']:.1f} / {warm['first_act_s']:.1f} |", flush=True)
            results.append({"agent": name, "precision": precision, "eager": eager, "compiled": cold,
                            "other_cached": headers, "cached": warm})
    out = ROOT / "benchmarks" / "results" / f"compile-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"cpu": cpu, "bf16": kind, "native_bf16": native, "threads": args.threads,
                               "torch": torch.__version__, "results": results}, indent=1))
    print(f"\nraw numbers: {out}")


if __name__ == "__main__":
    main()
