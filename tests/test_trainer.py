"""The loop end to end, in process: what it stores, that it learns, that it is reproducible, what it saves."""


import numpy as np
import pytest
import torch

from pathwise.agents.scaffold import optimizers
from pathwise.checkpoint import load_checkpoint
from pathwise.errors import UserError
from pathwise.run import build_trainer, resume, train


def collect(tiny, env, num_envs, steps=12, vector_mode="sync"):
    """Run only the random-action phase and return the buffer's stored transitions."""
    trainer = build_trainer(tiny(env=env, num_envs=num_envs, total_steps=steps, learning_starts=10**6,
                                 eval_episodes=0, vector_mode=vector_mode))
    trainer.run()
    n = len(trainer.buffer)
    b = trainer.buffer
    return b.obs[:n, 0].tolist(), b.next_obs[:n, 0].tolist(), b.terminated[:n].tolist()


def test_truncated_episode_bootstraps_from_its_real_final_observation(tiny):
    obs, next_obs, terminated = collect(tiny, "CounterTruncates-v0", num_envs=1, steps=9)
    # Three episodes of 3 steps, each cut by the time limit: 0->1, 1->2, 2->3 (not 2->0), never terminated.
    assert obs == [0, 1, 2] * 3 and next_obs == [1, 2, 3] * 3
    assert terminated == [0.0] * 9


def test_terminated_episode_stops_bootstrapping(tiny):
    obs, next_obs, terminated = collect(tiny, "CounterTerminates-v0", num_envs=1, steps=6)
    assert obs == [0, 1, 2] * 2 and next_obs == [1, 2, 3] * 2
    assert terminated == [0.0, 0.0, 1.0] * 2


@pytest.mark.parametrize("vector_mode", ["sync", "async"])
@pytest.mark.parametrize("env", ["CounterTruncates-v0", "CounterTerminates-v0"])
def test_vectorized_autoreset_never_stores_a_transition_across_a_reset(tiny, env, vector_mode):
    obs, next_obs, terminated = collect(tiny, env, num_envs=4, steps=40, vector_mode=vector_mode)
    assert len(obs) == 40
    assert all(n == o + 1 for o, n in zip(obs, next_obs))
    expected_terminal = [o == 2 and env == "CounterTerminates-v0" for o in obs]
    assert [bool(t) for t in terminated] == expected_terminal


def test_learns_a_tiny_task_in_seconds(tiny):
    config = tiny(env="Reach-v0", total_steps=1500, learning_starts=200, batch_size=64, eval_episodes=20,
                  sac={"actor_lr": 3e-3, "critic_lr": 3e-3, "alpha_lr": 3e-3, "hidden_sizes": (64, 64)})
    summary = train(config)
    # Uniformly random actions score -E[(a - t)^2] = -8/3 on this task.
    assert summary.eval_return_mean > -0.1, summary


def test_same_seed_gives_the_same_numbers(tiny, tmp_path):
    def run(i, seed):
        summary = train(tiny(run_dir=str(tmp_path / f"run{i}"), seed=seed, total_steps=400))
        return summary.eval_return_mean, load_checkpoint(summary.checkpoint)["agent_state"]["actor"]
    (ret_a, actor_a), (ret_b, actor_b), (_, actor_c) = run(0, 7), run(1, 7), run(2, 8)
    assert ret_a == ret_b
    assert all(torch.equal(actor_a[k], actor_b[k]) for k in actor_a)
    assert not all(torch.equal(actor_a[k], actor_c[k]) for k in actor_a)


def test_final_checkpoint_is_plain_data_with_what_a_user_needs(tiny):
    summary = train(tiny())
    payload = load_checkpoint(summary.checkpoint)  # torch.load(weights_only=True) inside
    assert payload["env_id"] == "Pendulum-v1" and payload["env_steps"] == 300 and payload["agent"] == "sac"
    assert payload["spaces"]["action_low"] == [-2.0] and payload["config"]["sac"]["hidden_sizes"] == [32, 32]
    assert summary.checkpoint.parent.parent.joinpath("config.yaml").is_file()
    assert summary.checkpoint.parent.parent.joinpath("evaluations.csv").read_text().count("\n") == 2


def test_updates_really_happen_in_a_short_run(tiny):
    trainer = build_trainer(tiny(total_steps=150, learning_starts=100))
    before = torch.cat([p.detach().flatten().clone() for p in trainer.agent.actor.parameters()])
    trainer.run()
    after = torch.cat([p.detach().flatten() for p in trainer.agent.actor.parameters()])
    assert not torch.equal(before, after)
    assert np.isfinite(trainer.evaluator.last[0])


def test_a_used_run_dir_is_not_overwritten(tiny):
    train(tiny())
    with pytest.raises(UserError, match="already holds a run"):
        build_trainer(tiny())


def test_learning_rates_fall_linearly_from_the_first_update_to_their_final_fraction(tiny, monkeypatch):
    trainer = build_trainer(tiny(total_steps=300, learning_starts=100, lr_final_fraction=0.1,
                                 sac={"hidden_sizes": (32, 32), "critic_lr": 1e-3}))
    agent = trainer.agent

    def lrs():
        return [group["lr"] for optimizer in optimizers(agent) for group in optimizer.param_groups]

    configured = lrs()
    assert sorted(configured) == [3e-4, 1e-3]  # the actor's and temperature's group, the critics'
    seen, update = [], agent.update
    monkeypatch.setattr(agent, "update", lambda batch: (seen.append((trainer.env_steps, lrs())), update(batch))[1])
    trainer.run()
    trainer.close()
    assert [steps for steps, _ in seen] == list(range(101, 301))
    for steps, now in seen:
        scale = 1.0 - 0.9 * (steps - 100) / 200
        np.testing.assert_allclose(now, [lr * scale for lr in configured], rtol=1e-12)
    np.testing.assert_allclose(seen[-1][1], [0.1 * lr for lr in configured], rtol=1e-12)


def test_with_lr_decay_steps_a_longer_run_has_the_rates_of_the_shorter_one_then_holds_them(tiny, monkeypatch):
    trainer = build_trainer(tiny(total_steps=400, learning_starts=100, lr_final_fraction=0.1, lr_decay_steps=300))
    agent = trainer.agent

    def lrs():
        return [group["lr"] for optimizer in optimizers(agent) for group in optimizer.param_groups]

    configured, seen, update = lrs(), [], agent.update
    monkeypatch.setattr(agent, "update", lambda batch: (seen.append((trainer.env_steps, lrs())), update(batch))[1])
    trainer.run()
    trainer.close()
    assert seen[-1][0] == 400
    for steps, now in seen:  # as a 300-step run's (the test above), then a tenth
        scale = 1.0 - 0.9 * min(1.0, (steps - 100) / 200)
        np.testing.assert_allclose(now, [lr * scale for lr in configured], rtol=1e-12)


def test_with_gamma_start_the_discounts_horizon_grows_linearly_to_gamma_then_holds(tiny, monkeypatch):
    trainer = build_trainer(tiny(total_steps=400, learning_starts=100, gamma_start=0.5, gamma_rise_steps=300,
                                 sac={"hidden_sizes": (32, 32), "gamma": 0.9}))
    seen, update = [], trainer.agent.update
    monkeypatch.setattr(trainer.agent, "update",
                        lambda batch: (seen.append((trainer.env_steps, batch.discount.unique().tolist())),
                                       update(batch))[1])
    trainer.run()
    trainer.close()
    assert seen[-1][0] == 400
    for steps, discounts in seen:  # horizons 2 at the first update, 10 at 300 env steps and on
        horizon = 2 + 8 * min(1.0, (steps - 100) / 200)
        assert discounts == [pytest.approx(1 - 1 / horizon)]
    assert seen[-1][1] == [pytest.approx(0.9)]


def test_gamma_start_must_lie_in_zero_one_below_a_gamma_below_one(tiny):
    with pytest.raises(ValueError, match=r"gamma_start must lie in \[0, 1\)"):
        tiny(gamma_start=1.0)
    with pytest.raises(ValueError, match="gamma_start needs an agent gamma below 1"):
        tiny(gamma_start=0.9, sac={"hidden_sizes": (32, 32), "gamma": 1.0})


def test_a_resumed_run_anneals_as_an_uninterrupted_one(tiny, tmp_path):
    def tensors(path):
        state = load_checkpoint(path)["agent_state"]
        return [v for part in ("actor", "critic") for v in state[part].values()]

    summary = train(tiny(total_steps=400, checkpoint_every=200, lr_final_fraction=0.2))
    straight = tensors(summary.checkpoint)
    summary.checkpoint.unlink()  # back to the step-200 checkpoint
    resumed = resume(tmp_path / "run", {})
    assert resumed.env_steps == 400
    assert all(torch.equal(a, b) for a, b in zip(straight, tensors(resumed.checkpoint)))
    groups = load_checkpoint(resumed.checkpoint)["agent_state"]["optimizer"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(0.2 * 3e-4)


def test_lr_final_fraction_must_lie_in_zero_one(tiny):
    with pytest.raises(ValueError, match=r"lr_final_fraction must lie in \(0, 1\]"):
        tiny(lr_final_fraction=0.0)


def test_no_evaluation_episodes_means_no_evaluations(tiny):
    summary = train(tiny(eval_every=100, eval_episodes=0))
    assert summary.env_steps == 300 and summary.eval_return_mean is None and summary.best is None


def test_with_action_repeat_steps_count_env_steps_and_the_agent_acts_and_updates_once_an_action(tiny):
    trainer = build_trainer(tiny(total_steps=600, learning_starts=200, action_repeat=2, updates_per_step=3,
                                 eval_every=300, eval_episodes=1))
    calls = []
    update = trainer.update
    trainer.update = lambda env_steps: calls.append(env_steps) or update(env_steps)
    summary = trainer.run()
    trainer.close()
    assert summary.env_steps == 600 and len(trainer.buffer) == 300  # a transition an action, two env steps each
    assert calls == list(range(202, 601, 2))  # updates_per_step updates after each action once 200 steps passed
    rows = (summary.checkpoint.parent.parent / "evaluations.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["300", "600"]
    assert all(r.split(",")[3] == "100.0" for r in rows)  # Pendulum's 200 env steps are 100 actions


def test_action_repeat_is_refused_where_it_cannot_hold(tiny):
    with pytest.raises(ValueError, match="action_repeat must be a positive integer"):
        tiny(action_repeat=0)
    with pytest.raises(ValueError, match="her recomputes .* one or the other"):
        tiny(env="PointGoal-v0", her=True, action_repeat=2)
    with pytest.raises(UserError, match="--action-repeat 2 needs --vector-mode sync or async; torch .* 1 acts"):
        build_trainer(tiny(vector_mode="torch", action_repeat=2))


def test_staggered_first_episodes_with_action_repeat_end_within_the_time_limit_in_actions(tiny):
    trainer = build_trainer(tiny(num_envs=16, stagger_episodes=True, action_repeat=3))
    trainer.collector.start()
    limit, cut = trainer.collector.stagger, trainer.collector.cut
    trainer.close()
    assert limit == 67  # Pendulum's 200 steps are 67 actions of 3, the last cut short
    assert 1 <= cut.min() and cut.max() <= 67 and cut.max() > 33


def test_a_policy_trained_with_action_repeat_holds_its_actions_in_evaluate_and_says_so(tiny, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    from pathwise import load_policy

    train(tiny(total_steps=400, action_repeat=2, num_envs=2, vector_mode="async"))
    run = tmp_path / "run"
    assert load_policy(run).action_repeat == 2
    out = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(run), "--episodes", "1", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["lengths"] == [100]  # Pendulum's 200 env steps, an action every two
    exported = subprocess.run([sys.executable, str(ROOT / "export.py"), str(run), "-o", str(tmp_path / "p.pt2")],
                              capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0 and "holding each action for 2 env steps" in exported.stdout
