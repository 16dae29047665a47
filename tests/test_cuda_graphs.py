"""--cuda-graph: updates and actions replayed from CUDA graphs do what the eager ones do. The tests that need a GPU
are skipped without one; the refusal on a CPU and the optimizers' round trip run everywhere."""

import pytest
import torch

from pathwise.agents.batch import Batch
from pathwise.agents.crossq import CrossQConfig
from pathwise.agents.sac import SACConfig
from pathwise.agents.scaffold import optimizers
from pathwise.agents.td3 import TD3Config
from pathwise.agents.tqc import TQCConfig
from pathwise.errors import UserError
from pathwise.run import build_trainer, resume_trainer
from pathwise.speed import Plan, accelerate
from pathwise.speed.optim import CapturableAdam, make_capturable_

OBS, ACT, B = 5, 2, 64
CONFIGS = {"sac": SACConfig(hidden_sizes=(64, 64)), "td3": TD3Config(hidden_sizes=(64, 64)),
           "crossq": CrossQConfig(actor_hidden_sizes=(64, 64), critic_hidden_sizes=(64, 64)),
           "tqc": TQCConfig(hidden_sizes=(64, 64), num_quantiles=5)}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_batch(seed, device):
    g = torch.Generator().manual_seed(seed)
    batch = Batch(torch.randn(B, OBS, generator=g), torch.rand(B, ACT, generator=g) * 2 - 1,
                  torch.randn(B, generator=g), torch.randn(B, OBS, generator=g),
                  (torch.rand(B, generator=g) < 0.1).float(), torch.full((B,), 0.99))
    return Batch(*(t.to(device) for t in batch))


def flat(agent):
    return torch.cat([t.detach().float().flatten() for name in ("actor", "critic")
                      for t in getattr(agent, name).state_dict().values()])


def test_cuda_graph_on_a_cpu_is_refused_in_one_sentence(tiny):
    with pytest.raises(UserError, match="--cuda-graph needs a CUDA device"):
        build_trainer(tiny(device="cpu", cuda_graph=True))


@pytest.mark.parametrize("fast_kernels", [False, True])
def test_optimizers_go_back_to_plain_floats_after_a_graphed_runs_state_is_loaded(fast_kernels):
    torch.manual_seed(0)
    graphed, plain = (CONFIGS["crossq"].make_agent(OBS, ACT, torch.device("cpu")) for _ in range(2))
    for optimizer in optimizers(graphed):  # what a graphed run saves: capturable groups, learning rates as tensors
        optimizer.__class__ = CapturableAdam
        make_capturable_(optimizer)
    lrs = [group["lr"] for o in optimizers(graphed) for group in o.param_groups]
    assert all(isinstance(lr, torch.Tensor) for lr in lrs)
    accelerate(plain, Plan.of("cpu", fast_kernels=fast_kernels))
    plain.load_state_dict(graphed.state_dict())
    groups = [group for o in optimizers(plain) for group in o.param_groups]
    assert [group["lr"] for group in groups] == [lr.item() for lr in lrs]
    assert not any(group["capturable"] for group in groups)
    assert torch.isfinite(plain.update(make_batch(0, "cpu"))["critic_loss"])
    graphed.load_state_dict(plain.state_dict())  # and a graphed run loading an eager run's state steps as graphed
    assert all(isinstance(g["lr"], torch.Tensor) and g["capturable"] for o in optimizers(graphed)
               for g in o.param_groups)


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_graphed_updates_and_actions_match_eager_ones(name, precision):
    device = torch.device("cuda")
    agents = []
    for graphed in (False, True):
        torch.manual_seed(0)
        agent = CONFIGS[name].make_agent(OBS, ACT, device)
        accelerate(agent, Plan.of(device, precision, cuda_graph=graphed))
        torch.manual_seed(1)
        infos = [{k: v.clone() for k, v in agent.update(make_batch(i, device)).items()} for i in range(12)]
        obs = make_batch(99, device).obs[:1]
        actions = [agent.act(obs).clone() for _ in range(5)] + [agent.act(obs, deterministic=True).clone()]
        agents.append((agent, infos, actions, {k: v.clone() for k, v in agent.grad_norms().items()}))
    (eager, eager_infos, eager_actions, eager_norms), (graphed, infos, actions, norms) = agents
    assert all(getattr(graphed, step).graphs for step in graphed.step_methods)  # the later calls were replays
    assert graphed.act.graphs
    torch.testing.assert_close(flat(graphed), flat(eager), rtol=1e-4, atol=1e-5)
    for a, b in zip(infos, eager_infos):
        assert a.keys() == b.keys()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(actions, eager_actions, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norms, eager_norms, rtol=1e-4, atol=1e-5)


@cuda
@pytest.mark.parametrize("graph, compile", [(False, False), (True, False), (True, True)])
def test_a_gpu_run_anneals_resets_checkpoints_and_resumes(tiny, graph, compile):
    config = tiny(device="cuda", cuda_graph=graph, compile=compile, total_steps=600, checkpoint_every=300,
                  lr_final_fraction=0.5, reset_every=400, eval_episodes=2, num_envs=2)
    trainer = build_trainer(config)
    trainer.run()
    lr = trainer.learning_rates.optimizers[0].param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) == graph  # a graph's is annealed in place
    # half the configured rate at the end
    assert float(lr) == pytest.approx(0.5 * trainer.learning_rates.base[0][0], rel=1e-6)
    assert torch.isfinite(torch.tensor(trainer.evaluator.last)).all()
    assert bool(getattr(getattr(trainer.agent, trainer.agent.step_methods[0]), "graphs", None)) == graph
    trainer.close()
    resumed = resume_trainer(config.run_dir, {"total_steps": 800})
    resumed.run()
    assert resumed.env_steps == 800
    assert bool(getattr(getattr(resumed.agent, resumed.agent.step_methods[0]), "graphs", None)) == graph
    resumed.close()
