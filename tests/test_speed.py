"""The speed layer (pathwise/speed): each fast kernel equal to the definition in agents/, an accelerated agent
learning what the plain one learns, the choices `auto` makes, and the math kept free of speed machinery."""

import ast
import copy

import pytest
import torch
from conftest import ROOT

from pathwise import speed
from pathwise.agents.batch import Batch
from pathwise.agents.crossq import CrossQConfig
from pathwise.agents.networks import Actor, BatchRenorm, QEnsemble
from pathwise.agents.sac import SACConfig
from pathwise.agents.scaffold import adam, optimizers
from pathwise.agents.td3 import TD3Config
from pathwise.agents.tqc import TQCConfig, quantile_huber_loss
from pathwise.run import build_trainer, expected_updates, resume, train
from pathwise.speed import Plan, accelerate, kernels, machine, optim
from pathwise.speed.optim import FastAdam

OBS, ACT, B = 3, 2, 64
CONFIGS = {"sac": SACConfig(hidden_sizes=(32, 32)), "td3": TD3Config(hidden_sizes=(32, 32)),
           "crossq": CrossQConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(32, 32), policy_delay=2),
           "tqc": TQCConfig(hidden_sizes=(32, 32), num_quantiles=5),
           "crossq-categorical": CrossQConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(32, 32),
                                              value_bins=11)}


def make_batch(seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, OBS, generator=g) * 2 + 1, torch.rand(B, ACT, generator=g) * 2 - 1,
                 torch.randn(B, generator=g), torch.randn(B, OBS, generator=g) * 2 + 1,
                 (torch.rand(B, generator=g) < 0.1).float(), torch.full((B,), 0.99))


def twins(name: str, plan: Plan):
    """The agent `name` twice from the same seed: plain, and accelerated by `plan`."""
    torch.manual_seed(0)
    plain = CONFIGS[name].make_agent(OBS, ACT, torch.device("cpu"))
    fast = copy.deepcopy(plain)
    accelerate(fast, plan)
    return plain, fast


def states(agent) -> dict:
    return {name: module.state_dict() for name, module in vars(agent).items() if isinstance(module, torch.nn.Module)}


# ---- each fast kernel equals its definition -----------------------------------------------------------------


@pytest.mark.parametrize("ensemble", [None, 3])
@pytest.mark.parametrize("warmup_steps", [0, 10])
def test_fast_batch_renorm_equals_the_textbook_formula_forward_backward_and_statistics(ensemble, warmup_steps):
    torch.manual_seed(0)
    layer = BatchRenorm(6, ensemble_size=ensemble, warmup_steps=warmup_steps, r_max=1.5, d_max=0.5).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0)
        layer.bias.uniform_(-1.0, 1.0)
        layer.running_mean.uniform_(-1.0, 1.0)  # far enough from the batch's that some r and d hit their bounds
        layer.running_var.uniform_(0.2, 6.0)
    fast = copy.deepcopy(layer)
    kernels.swap_layers([fast], inductor=False)
    assert type(fast) is kernels.FastBatchRenorm
    shape = (64, 6) if ensemble is None else (ensemble, 64, 6)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 0.5).requires_grad_(True)
    upstream = torch.randn(shape, dtype=torch.float64)
    for training in (True, False):
        for frozen in (False, True):
            outputs = []
            for module in (layer, fast):
                y = module(x, train=training, frozen=frozen)
                params = [x] if frozen else [x, module.weight, module.bias]
                outputs.append((y, torch.autograd.grad((y * upstream).sum(), params)))
            (want, want_grads), (got, got_grads) = outputs
            torch.testing.assert_close(got, want)
            for g, w in zip(got_grads, want_grads, strict=True):
                torch.testing.assert_close(g, w)
            for key, value in layer.state_dict().items():  # the running statistics moved alike
                torch.testing.assert_close(fast.state_dict()[key], value)


def test_fused_quantile_huber_loss_equals_the_textbook_loss_and_its_gradient():
    g = torch.Generator().manual_seed(2)
    quantiles = (torch.randn(2, 5, 7, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    target = torch.randn(5, 9, generator=g, dtype=torch.float64) * 2
    want = quantile_huber_loss(quantiles, target)
    (want_grad,) = torch.autograd.grad(want * 3.0, quantiles)
    got = kernels.quantile_huber_loss(quantiles, target)
    (got_grad,) = torch.autograd.grad(got * 3.0, quantiles)  # the upstream gradient scales it
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)


def test_fast_adam_is_torch_adam_bit_for_bit():
    # Two groups at different learning rates, a parameter without a gradient on some steps, a learning rate changed
    # between steps (as annealing does), and the state a checkpoint would save.
    torch.manual_seed(0)
    params = [torch.randn(shape, requires_grad=True) for shape in ((5, 3), (3,), (4,))]
    copies = [copy.deepcopy(p) for p in params]
    reference = adam({"params": params[:2], "lr": 1e-2}, {"params": params[2:], "lr": 3e-3})
    ours = adam({"params": copies[:2], "lr": 1e-2}, {"params": copies[2:], "lr": 3e-3})
    ours.__class__ = FastAdam
    full_steps = []
    original = torch.optim.Adam.step
    for step in range(6):
        grads = [torch.randn_like(p) for p in params]
        for optimizer, tensors in ((reference, params), (ours, copies)):
            optimizer.zero_grad()
            for p, g in zip(tensors, grads):
                if not (step in (2, 3) and p is tensors[1]):
                    p.grad = g.clone()
            if step == 4:
                optimizer.param_groups[0]["lr"] = 5e-3
            if optimizer is ours:
                torch.optim.Adam.step = lambda self, *a, **k: full_steps.append(1) or original(self, *a, **k)
            try:
                optimizer.step()
            finally:
                torch.optim.Adam.step = original
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
    a, b = reference.state_dict()["state"], ours.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[i][k], b[i][k]) for i in a for k in a[i])
    assert ours.state[copies[1]]["step"] == 4  # stepped only when it had a gradient
    assert len(full_steps) == 1  # the first, which created the state; then the fused kernel alone


def test_fast_adam_steps_through_torch_optim_after_its_private_op_fails(monkeypatch, capsys):
    # A torch release that changed torch._fused_adam_: the step is torch.optim's, the same numbers, said once.
    torch.manual_seed(0)
    params = [torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    copies = [copy.deepcopy(p) for p in params]
    reference, ours = adam({"params": params, "lr": 1e-2}), adam({"params": copies, "lr": 1e-2})
    ours.__class__ = FastAdam

    def changed(*args, **kwargs):
        raise TypeError("_fused_adam_() got an unexpected keyword argument 'beta1'")

    monkeypatch.setattr(optim, "fused_adam_", changed)
    monkeypatch.setattr(FastAdam, "private_op_works", True)
    for _ in range(3):
        for optimizer, tensors in ((reference, params), (ours, copies)):
            optimizer.zero_grad()
            for p in tensors:
                p.grad = torch.ones_like(p)
            optimizer.step()
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
    assert ours.state[copies[0]]["step"] == 3
    assert capsys.readouterr().err.count("steps through torch.optim") == 1


@pytest.mark.slow
def test_relu_under_compile_saves_no_boolean_mask_and_has_relus_gradient():
    # The critics' forward in an actor loss: frozen weights, so no layer's backward keeps a ReLU's output, and a
    # compiler left to itself saves the mask x <= 0 instead (slow to write on a CPU); ours keeps the output.
    torch.manual_seed(0)
    critic = QEnsemble(obs_dim=4, act_dim=2, hidden_sizes=(16, 16))
    kernels.swap_layers([critic], inductor=True)
    obs = torch.randn(8, 4)
    action = torch.rand(8, 2, requires_grad=True)

    def saved_dtypes(fn):
        dtypes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: dtypes.append(t.dtype) or t, lambda t: t):
            q = fn(obs, action)
        (grad,) = torch.autograd.grad(q.sum(), action)
        return dtypes, grad

    def forward(obs, action):
        return critic(obs, action, frozen=True)

    _, eager_grad = saved_dtypes(forward)
    compiled_dtypes, compiled_grad = saved_dtypes(torch.compile(forward))
    assert torch.bool not in compiled_dtypes and compiled_dtypes
    torch.testing.assert_close(compiled_grad, eager_grad)


@pytest.mark.parametrize("obs_dim, act_dim", [(3, 2), (11, 3)])  # first layer narrow (5 inputs) and wide (14)
@pytest.mark.slow
def test_layers_written_for_inductor_match_the_plain_layers(obs_dim, act_dim, monkeypatch):
    # Under torch.compile on a CPU the heads (at most NARROW outputs) and a narrow first layer are products and
    # sums instead of matmuls, and the other layers add their bias apart from the matmul; outputs and gradients
    # must be the plain layers', frozen or not.
    heads, apart = [], []
    dot_head, bias_apart = kernels._dot_head, kernels._bias_apart
    monkeypatch.setattr(kernels, "_dot_head", lambda *args: heads.append(1) or dot_head(*args))
    monkeypatch.setattr(kernels, "_bias_apart", lambda *args: apart.append(1) or bias_apart(*args))
    torch.manual_seed(0)
    critic, actor = QEnsemble(obs_dim, act_dim, (16, 16)), Actor(obs_dim, act_dim, (16, 16))
    plain = copy.deepcopy((critic, actor))
    kernels.swap_layers([critic, actor], inductor=True)
    assert 2 * act_dim <= kernels.NARROW
    obs = torch.randn(8, obs_dim)
    action = torch.rand(8, act_dim, requires_grad=True)

    def losses(critic, actor):
        def run(obs, action):
            dist = actor(obs)
            return (critic(obs, action).sum() + critic(obs, action, frozen=True).square().sum()
                    + dist.loc.square().sum())
        return run

    def grads(fn, critic, actor):
        loss = fn(obs, action)
        return [loss, *torch.autograd.grad(loss, [*critic.parameters(), *actor.parameters(), action])]

    expected = grads(losses(*plain), *plain)
    eager = grads(losses(critic, actor), critic, actor)
    assert not heads and not apart  # eager mode: the plain layers' matmuls
    for got, want in zip(eager, expected, strict=True):
        torch.testing.assert_close(got, want)
    for got, want in zip(grads(torch.compile(losses(critic, actor)), critic, actor), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert heads and apart  # compiled: written out


def test_an_exported_policy_keeps_its_matmuls():
    # torch.export also traces as a compiler does; the file it writes is for other runtimes (Gemm in ONNX).
    head = Actor(3, 1, (16, 16)).head
    kernels.swap_layers([head], inductor=True)
    exported = torch.export.export(head, (torch.randn(2, 16),))
    ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "aten.linear.default" in ops and "aten.sum.dim_IntList" not in ops


# ---- an accelerated agent learns what the plain one learns ---------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_an_accelerated_agent_updates_as_the_plain_agent(name, compile):
    plain, fast = twins(name, Plan.of("cpu", compile=compile, fast_kernels=True))
    for step in range(4):  # whole policy-delay cycles: critic-only updates and actor updates
        torch.manual_seed(step)
        want = plain.update(make_batch(step))
        torch.manual_seed(step)
        got = fast.update(make_batch(step))
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)
    for part, state in states(plain).items():
        for key, value in state.items():
            torch.testing.assert_close(states(fast)[part][key], value, rtol=1e-4, atol=1e-5)
    obs = make_batch(9).obs
    torch.manual_seed(1)
    want = plain.act(obs)
    torch.manual_seed(1)
    torch.testing.assert_close(fast.act(obs), want, rtol=1e-5, atol=1e-6)  # the same draws, compiled or not


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bf16_keeps_weights_statistics_log_probs_and_losses_in_float32(name):
    _, agent = twins(name, Plan.of("cpu", precision="bf16"))
    for step in range(3):
        info = agent.update(make_batch(step))
        assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in info.values())
    assert all(t.dtype in (torch.float32, torch.long) for state in states(agent).values() for t in state.values())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert agent.act(make_batch(0).obs).dtype == torch.float32


def test_a_checkpoint_does_not_depend_on_the_path_that_wrote_it(tiny, tmp_path):
    # The same run on the public path (as on a GPU, or with a torch that lacks the private ops) and on the fast
    # one: checkpoints of the same keys, shapes and dtypes, and each resumes on the other path. (Their numbers
    # part: the kernels round differently, the actions then differ a little, and so does the data collected.)
    from pathwise.checkpoint import load_checkpoint

    config = dict(agent=CrossQConfig(actor_hidden_sizes=(16,), critic_hidden_sizes=(16,)), total_steps=200)
    fast = train(tiny(run_dir=str(tmp_path / "fast"), **config))
    monkey = pytest.MonkeyPatch()
    try:
        monkey.setattr(speed, "has_private_ops", lambda: False)
        public = train(tiny(run_dir=str(tmp_path / "public"), **config))
        assert load_checkpoint(fast.checkpoint)["speed"]["fast_kernels"] is True
        assert load_checkpoint(public.checkpoint)["speed"]["fast_kernels"] is False
        assert resume(tmp_path / "fast", {"total_steps": 300}).env_steps == 300  # on the public path
    finally:
        monkey.undo()
    assert resume(tmp_path / "public", {"total_steps": 300}).env_steps == 300  # on the fast path
    a, b = (load_checkpoint(s.checkpoint)["agent_state"] for s in (fast, public))
    for part in ("actor", "critic", "critic_optimizer", "actor_optimizer"):
        flat_a, flat_b = (torch.utils._pytree.tree_leaves(state[part]) for state in (a, b))
        assert len(flat_a) == len(flat_b)
        for x, y in zip(flat_a, flat_b):
            assert type(x) is type(y)
            if isinstance(x, torch.Tensor):
                assert x.shape == y.shape and x.dtype == y.dtype


# ---- what `auto` decides ------------------------------------------------------------------------------------


def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_bf16_natively(tiny, tmp_path, monkeypatch):
    def plan(run: str, **overrides) -> Plan:
        trainer = build_trainer(tiny(run_dir=str(tmp_path / run), **{"precision": "auto", **overrides}))
        trainer.close()
        return trainer.speed

    monkeypatch.setattr(machine, "native_bf16", lambda: (True, "AMX"))
    native = plan("native", compile=True)
    assert native.precision == "bf16" and "AMX" in native.summary() and not native.warnings
    monkeypatch.setattr(machine, "native_bf16", lambda: (False, "AVX2 without native bf16"))
    emulated = plan("emulated", compile=True)
    assert emulated.precision == "fp32" and "AVX2" in emulated.summary() and not emulated.warnings
    asked = plan("asked", precision="bf16")
    assert asked.precision == "bf16"
    (warning,) = asked.warnings
    assert "without native bf16" in warning and "times slower" in warning and "--precision auto" in warning


@pytest.mark.slow
def test_the_saved_config_keeps_what_was_asked_and_says_what_it_resolved_to(tiny, monkeypatch):
    import yaml

    monkeypatch.setattr(machine, "native_bf16", lambda: (False, "AVX2 without native bf16"))
    config = tiny(total_steps=200, precision="auto", compile=None)
    train(config)
    text = open(f"{config.run_dir}/config.yaml").read()
    assert yaml.safe_load(text)["precision"] == "auto" and yaml.safe_load(text)["compile"] is None
    assert "#   precision: fp32" in text and "#   compile: false" in text
    from pathwise.checkpoint import load_checkpoint

    resolved = load_checkpoint(config.run_dir)["speed"]
    assert resolved["precision"] == "fp32" and resolved["compile"] is False
    monkeypatch.setattr(machine, "native_bf16", lambda: (True, "AMX"))  # resumed on another machine: again
    resume(config.run_dir, {"total_steps": 300, "compile": True})
    assert load_checkpoint(config.run_dir)["speed"]["precision"] == "bf16"
    assert "#   precision: bf16" in open(f"{config.run_dir}/config.yaml").read()


def test_auto_compile_waits_for_runs_whose_updates_repay_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "has_cpp_compiler", lambda: True)
    monkeypatch.setattr(machine, "native_bf16", lambda: (False, "AVX2 without native bf16"))
    marker = tmp_path / "2.13-AVX2-0123456789abcdef"
    monkeypatch.setattr(speed, "compile_marker", lambda *args: marker)

    def plan(**overrides):
        config = tiny(**{"compile": None, "precision": "auto", "learning_starts": 0, **overrides})
        return speed.plan_speed(config, torch.device("cpu"), expected_updates(config), config.total_steps,
                                (3, 1), machine.Threads(1))

    needed = [int(speed.COMPILE_COST_S["sac"][state] / speed.UPDATE_SAVES_S["sac", "fp32"]) for state in range(3)]
    assert needed[0] > needed[1] > needed[2]  # the more inductor's cache holds, the sooner a compile repays
    short = plan(total_steps=needed[0] - 10)
    assert not short.compile and "would not repay" in short.reasons["compile"] and "holds none" in short.summary()
    assert plan(total_steps=needed[0] + 10).compile
    (tmp_path / "2.13-AVX2-fedcba9876543210").touch()  # another run's graphs: their precompiled headers
    assert plan(total_steps=needed[1] + 10).compile and not plan(total_steps=needed[1] - 10).compile
    marker.touch()  # this run's graphs, compiled before
    assert plan(total_steps=needed[2] + 10).compile and not plan(total_steps=needed[2] - 10).compile
    assert not plan(total_steps=needed[0] + 10, agent=TD3Config()).compile  # TD3 saves little compiled here
    assert plan(compile=True).compile and not plan(total_steps=10_000_000, compile=False).compile
    # acting compiled only where its env steps repay its own compile
    assert not plan(total_steps=needed[2] + 10).compile_act and plan(total_steps=10_000_000).compile_act


def test_bf16_runs_eager_only_where_the_networks_are_wide_enough_for_it_to_pay(tiny, monkeypatch):
    monkeypatch.setattr(machine, "has_cpp_compiler", lambda: True)
    monkeypatch.setattr(machine, "native_bf16", lambda: (True, "AMX"))

    def plan(**overrides):
        config = tiny(**{"compile": None, "precision": "auto", **overrides})
        return speed.plan_speed(config, torch.device("cpu"), expected_updates(config), config.total_steps,
                                (3, 1), machine.Threads(1))

    assert plan(total_steps=10_000_000).precision == "bf16"  # compiled
    narrow = plan(total_steps=300)
    assert narrow.precision == "fp32" and not narrow.compile and "would not pay" in narrow.reasons["precision"]
    assert plan(total_steps=300, sac={"hidden_sizes": (512, 512)}).precision == "bf16"
    assert plan(total_steps=300, precision="bf16").precision == "bf16"  # asked for


def test_compile_without_a_cpp_compiler_trains_eager_after_one_line(tiny, monkeypatch, capsys):
    monkeypatch.setattr(machine, "has_cpp_compiler", lambda: False)
    config = tiny(compile=True, total_steps=200)
    summary = train(config, announce=lambda: None)
    assert summary.env_steps == 200
    err = capsys.readouterr().err
    assert "needs a C++ compiler" in err and "training eager" in err


def test_a_compile_that_fails_falls_back_to_eager_after_one_line(capsys):
    def fn(x):
        return x * 2

    compiled = speed.Compiled(fn, torch.device("cpu"))

    def broken(*args):
        raise torch._inductor.exc.CppCompileError(["g++", "kernel.cpp"], "g++: internal compiler error")

    compiled.compiled = broken
    assert torch.equal(compiled(torch.ones(2)), torch.full((2,), 2.0))
    assert torch.equal(compiled(torch.ones(2)), torch.full((2,), 2.0))
    err = capsys.readouterr().err
    assert err.count("training eager") == 1 and "torch.compile failed" in err


@pytest.mark.slow
def test_a_compiled_run_on_a_cpu_acts_compiled_with_the_eager_policys_actions(tiny):
    agent = build_trainer(tiny(compile=True, total_steps=10_000_000)).agent  # a run long enough to repay it
    assert isinstance(agent.act, speed.Compiled)
    obs = torch.randn(3, OBS)
    for deterministic in (False, True):
        torch.manual_seed(0)
        compiled = agent.act(obs, deterministic)
        torch.manual_seed(0)
        eager = type(agent).act(agent, obs, deterministic)
        torch.testing.assert_close(compiled, eager)


def test_threads_leave_room_for_what_else_keeps_the_cpus_busy():
    assert machine.fair_threads(2, 0.0) == 2
    assert machine.fair_threads(2, 0.9) == 1  # one other busy process (SBX, a second run)
    assert machine.fair_threads(2, 0.3) == 2  # a process that is mostly asleep
    assert machine.fair_threads(2, 3.0) == 1  # never none
    assert machine.fair_threads(8, 2.0) == 6
    assert machine.fair_threads(4, None) == 4  # nothing known: every CPU
    assert machine.Threads(3).count == 3 and "--threads" in machine.Threads(3).reason


def test_the_load_reading_sees_another_busy_process():
    import subprocess
    import sys
    import time

    load = machine.CPULoad()
    if load.others_busy() is None and load._last is None:
        pytest.skip("this system has no /proc/stat")
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)
        load.others_busy()  # the window starts with the spinner running
        time.sleep(1.0)
        busy = load.others_busy()
    finally:
        spinner.kill()
    assert busy is not None and busy >= 0.7


# ---- the math is free of speed machinery --------------------------------------------------------------------


def test_no_file_of_the_math_calls_private_torch_ops_compile_autocast_or_cuda_graphs():
    forbidden = {"compile", "autocast", "CUDAGraph", "graph", "cuda_graphs", "compiler"}
    for path in sorted((ROOT / "agents").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                chain, inner = [node.attr], node.value
                while isinstance(inner, ast.Attribute):
                    chain.append(inner.attr)
                    inner = inner.value
                if isinstance(inner, ast.Name):
                    chain.append(inner.id)
                chain.reverse()  # e.g. ["torch", "_fused_adam_"]
                where = f"{path.name}:{node.lineno}: {'.'.join(chain)}"
                if chain[0] == "torch":
                    assert not any(part.startswith("_") for part in chain[1:]), where
                    assert not forbidden & set(chain[1:]), where
                assert chain[:2] != ["object", "__setattr__"], where
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + ["." * getattr(node, "level", 0)
                                                                + (getattr(node, "module", None) or "")]
                speed = [n for n in names if n.startswith("pathwise.speed") or "_dynamo" in n or "_inductor" in n]
                assert not speed, path.name


def test_a_plain_agent_steps_through_torchs_public_optimizer():
    agent = CONFIGS["crossq"].make_agent(OBS, ACT, torch.device("cpu"))
    assert all(type(o) is torch.optim.Adam for o in optimizers(agent))
    assert all(type(m).__module__.startswith(("pathwise.agents.", "torch.")) for m in agent.critic.modules())
