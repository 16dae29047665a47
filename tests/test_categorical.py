"""The categorical value (agents/categorical.py) and CrossQ's categorical critics: the two-hot encoding, its
decoding, the cross-entropy, and a critic that fits its targets and trains, saves and resumes through the trainer."""

import math

import pytest
import torch
import torch.nn.functional as F

from pathwise.agents.batch import Batch
from pathwise.agents.categorical import Bins, SymlogScalar, symexp, symlog
from pathwise.agents.crossq import CrossQ, CrossQConfig

BINS = Bins(21, 10.0)


def test_symexp_inverts_symlog():
    x = torch.tensor([-5000.0, -3.5, -1e-3, 0.0, 2e-4, 1.0, 42.0, 20000.0], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)
    assert symlog(torch.tensor(math.e - 1)).item() == pytest.approx(1.0)


def test_two_hot_puts_its_weight_on_the_two_bins_around_the_target_with_the_target_as_its_mean():
    target = torch.tensor([-900.0, -1.0, 0.0, 0.3, 7.0, 150.0, 20000.0], dtype=torch.float64)
    probs = BINS.two_hot(target)
    assert probs.shape == (7, 21)
    torch.testing.assert_close(probs.sum(-1), torch.ones(7, dtype=torch.float64))
    assert ((probs > 0).sum(-1) <= 2).all() and (probs >= 0).all()
    nonzero = [torch.nonzero(row).flatten().tolist() for row in probs]
    assert all(len(i) == 1 or i[1] == i[0] + 1 for i in nonzero)  # neighbours
    torch.testing.assert_close((probs * BINS.centers(target)).sum(-1), symlog(target))
    assert probs[2, 10] == 1.0  # 0 falls on the middle bin


def test_targets_beyond_the_support_go_to_its_end_bins():
    probs = BINS.two_hot(torch.tensor([-1e6, 1e6]))
    assert probs[0, 0] == 1.0 and probs[1, -1] == 1.0


def test_a_value_decodes_what_was_encoded():
    target = torch.tensor([-321.0, -0.5, 0.0, 12.25, 4000.0], dtype=torch.float64)
    torch.testing.assert_close(BINS.value(BINS.two_hot(target).log()), target)


def test_hl_gauss_spreads_a_normal_of_the_smoothing_width_around_the_target():
    smooth = Bins(101, 10.0, smoothing=0.75)
    target = torch.tensor([-40.0, 0.0, 2.5, 900.0], dtype=torch.float64)  # symlog inside the support, off its ends
    probs = smooth.encode(target)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, dtype=torch.float64))
    centers = smooth.centers(target)
    mean = (probs * centers).sum(-1)
    torch.testing.assert_close(mean, symlog(target), atol=1e-6, rtol=0)
    std = ((probs * (centers - mean.unsqueeze(-1)) ** 2).sum(-1)).sqrt() / 0.2  # in bins of width 0.2
    # the Gaussian's mass integrated over each bin adds the bins' own spread, 1/sqrt(12) of a bin (Sheppard)
    torch.testing.assert_close(std, torch.full_like(std, (0.75**2 + 1 / 12) ** 0.5), atol=0.01, rtol=0)
    torch.testing.assert_close(smooth.value(probs.log()), target, rtol=1e-5, atol=1e-5)
    assert torch.equal(Bins(101, 10.0).encode(target), Bins(101, 10.0).two_hot(target))  # no smoothing: two-hot


def test_the_loss_is_the_cross_entropy_to_the_two_hot_target_summed_over_members():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 16, 21), torch.randn(16) * 50
    want = sum(F.cross_entropy(logits[e], BINS.two_hot(target)) for e in range(3))
    torch.testing.assert_close(BINS.loss(logits, target), want)


@pytest.mark.parametrize("head", [{"value_bins": 51}, {"value_symlog": True},
                                  {"value_bins": 51, "value_linear": True, "value_limit": 0}])
def test_a_critic_with_a_value_head_fits_its_targets(head):
    torch.manual_seed(0)
    config = CrossQConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(64, 64), policy_delay=100,
                          critic_lr=3e-3, **head)
    agent = CrossQ(3, 2, config, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    obs, action = torch.randn(128, 3, generator=g), torch.rand(128, 2, generator=g) * 2 - 1
    reward = 100 * obs[:, 0] + 20 * action[:, 1]  # terminal steps: the target is the reward alone
    # terminal steps: the discount (0.5) only sets how far a range that follows the rewards reaches (r / 0.5)
    batch = Batch(obs, action, reward, torch.randn(128, 3, generator=g), torch.ones(128), torch.full((128,), 0.5))
    assert agent.critic(obs, action).shape == ((2, 128, 51) if "value_bins" in head else (2, 128))
    first = agent.update(batch)["critic_loss"]
    for _ in range(600):  # long enough for the running statistics to settle
        info = agent.update(batch)
    assert info["critic_loss"] < 0.5 * first
    q = agent._frozen_critic(obs, action)  # (E, B) decoded values, with the running statistics
    assert q.shape == (2, 128)
    # symlog regression fits each value to a relative error (its squared loss is in symlog space)
    assert (q - reward).abs().mean() < (0.05 if "value_bins" in head else 0.15) * reward.abs().mean()


@pytest.mark.parametrize("fields, message", [({"value_bins": 1}, "value_bins must be 0"),
                                             ({"value_bins": -3}, "value_bins must be 0"),
                                             ({"value_bins": 11, "value_symlog": True}, "value_symlog is a scalar")])
def test_bad_value_heads_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        CrossQConfig(**fields)


def test_linear_bins_place_values_evenly_in_q_and_decode_their_encoding_exactly():
    bins = Bins(11, 50.0, linear=True)
    torch.testing.assert_close(bins.centers(torch.zeros(())), torch.linspace(-50.0, 50.0, 11))
    target = torch.tensor([-50.0, -7.5, 0.0, 12.0, 33.3, 50.0])
    torch.testing.assert_close(bins.value(bins.two_hot(target).log()), target)
    assert bins.two_hot(torch.tensor([20.0]))[0, 7] == 1.0  # 20 is the centre of bin 7 (-50 + 7 * 10)
    assert torch.equal(bins.two_hot(torch.tensor([80.0])), bins.two_hot(torch.tensor([50.0])))  # the end bin


def test_a_following_range_widens_to_each_rewards_return_and_never_narrows():
    bins = Bins(21, 0.0, linear=True)
    torch.testing.assert_close(bins.range, torch.tensor([-1.0, 1.0]))
    bins.widen(torch.tensor([0.5, 3.0, -0.2]), torch.full((3,), 0.99))  # 3 / 0.01 = 300; -0.2 / 0.01 = -20
    torch.testing.assert_close(bins.range, torch.tensor([-20.0, 300.0]))
    bins.widen(torch.tensor([1.0]), torch.tensor([0.9]))  # an n-step reward with its discount: 10, inside
    torch.testing.assert_close(bins.range, torch.tensor([-20.0, 300.0]))
    assert Bins(21, 10.0, linear=True).follows is False and Bins(21, 0.0).follows is False
    fixed = Bins(21, 10.0)
    fixed.widen(torch.tensor([1e4]), torch.tensor([0.99]))
    torch.testing.assert_close(fixed.range, torch.tensor([-10.0, 10.0]))
    with pytest.raises(ValueError, match="value_limit must be positive"):
        CrossQConfig(value_bins=11, value_limit=0)


def test_the_symlog_scalar_reads_an_output_within_its_range_so_no_value_or_gradient_overflows():
    # An output the critic extrapolates far out (seen in a Hopper run: the actor's weights became non-finite after
    # 350 updates) reads as the range's end, with no gradient pushing it further.
    out = torch.tensor([[3.0, 95.0, -120.0]], requires_grad=True)
    q = SymlogScalar(limit=10.0).value(out)
    torch.testing.assert_close(q.detach(), torch.tensor([[symexp(torch.tensor(3.0)).item(), symexp(torch.tensor(
        10.0)).item(), -symexp(torch.tensor(10.0)).item()]]))
    q.sum().backward()
    assert torch.isfinite(out.grad).all() and out.grad[0, 0] > 0 and out.grad[0, 1] == out.grad[0, 2] == 0
    assert CrossQConfig(value_symlog=True, value_limit=7.0).value_head().limit == 7.0


def test_the_symlog_scalar_reads_its_output_as_symlog_q_and_fits_it_there():
    head = SymlogScalar()
    out, target = torch.tensor([[0.0, 2.0], [-1.0, 5.0]]), torch.tensor([0.0, 100.0])
    torch.testing.assert_close(head.value(out), symexp(out))
    want = 0.5 * ((out - symlog(target)) ** 2).mean(dim=1).sum()
    torch.testing.assert_close(head.loss(out, target), want)


@pytest.mark.parametrize("head", [{}, {"value_linear": True, "value_limit": 0}])
def test_a_categorical_crossq_run_trains_saves_and_resumes_exactly(tiny, tmp_path, head):
    from pathwise.checkpoint import load_checkpoint
    from pathwise.run import resume, train

    common = dict(agent=CrossQConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(32, 32), value_bins=11,
                                     **head),
                  total_steps=300, eval_episodes=1)
    straight = train(tiny(run_dir=str(tmp_path / "straight"), **common))
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 200}))
    resumed = resume(tmp_path / "split", {"total_steps": 300})
    a, b = (load_checkpoint(s.checkpoint)["agent_state"] for s in (straight, resumed))
    assert a["critic"]["layers.2.weight"].shape == (2, 32, 11)
    for part in ("actor", "critic"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    if head:  # the range the rewards widened, kept in the checkpoint
        assert a["value_range"][1] - a["value_range"][0] > 2.0 and torch.equal(a["value_range"], b["value_range"])
    assert resumed.eval_return_mean == straight.eval_return_mean
