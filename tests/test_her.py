"""Dict observations, hindsight relabelling and success rates, on the in-repo goal envs (tests/toy_envs.py)."""

import importlib.util
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_checkpoints import agent_tensors, script
from toy_envs import PointGoal

from pathwise import export_policy, load_policy
from pathwise.agents.sac import SACConfig
from pathwise.collector import Collector
from pathwise.commands.plot import read_run
from pathwise.config import Config
from pathwise.envs import make_env, make_vector_env, obs_columns, obs_keys
from pathwise.errors import UserError
from pathwise.evaluation import run_episodes
from pathwise.her import Hindsight
from pathwise.replay_buffer import ReplayBuffer
from pathwise.run import make_hindsight, resume, resume_trainer, train

# GoalCounter's flat observation: achieved_goal [t, episode], desired_goal [-1, -1], observation [t, episode].
T, EPISODE = 0, 1


def filled_buffer(steps, num_envs=2, capacity=1_000, n_step=1, relabels=4, seed=0):
    """A buffer with hindsight, filled by `steps` env steps of GoalCounter (5-step episodes) in `num_envs` sub-envs;
    its columns; and the env (for its compute_reward)."""
    envs = make_vector_env("GoalCounter-v0", num_envs)
    config = Config(env="GoalCounter-v0", her=True, her_relabels=relabels, buffer_size=capacity, batch_size=32,
                    num_envs=num_envs)
    env = make_env("GoalCounter-v0")
    buffer = ReplayBuffer(capacity, 6, 1, torch.device("cpu"), seed=seed, gamma=0.5, n_step=n_step,
                          num_envs=num_envs, hindsight=make_hindsight(env, config, torch.device("cpu")))
    collector = Collector(envs, seed=0)
    collector.start()
    for _ in range(steps):
        transition, _, _ = collector.step(collector.random_actions())
        buffer.add(*transition)
    return buffer, obs_columns(obs_keys(env)), collector


def test_a_dict_env_is_flattened_in_its_key_order_and_the_order_is_recorded():
    env = make_env("PointGoal-v0")
    assert [key for key, _ in obs_keys(env)] == ["achieved_goal", "desired_goal", "observation"]  # the Dict's order
    assert env.observation_space.shape == (6,)
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped._obs()
    np.testing.assert_array_equal(obs, np.concatenate([raw["achieved_goal"], raw["desired_goal"], raw["observation"]]))


def test_relabelled_goals_were_achieved_later_in_the_transitions_own_episode():
    buffer, columns, collector = filled_buffer(steps=23)  # 4 whole episodes per sub-env and one in flight
    a, d = columns["achieved_goal"], columns["desired_goal"]
    batch = buffer.sample(2_000)
    m = buffer.hindsight.share(2_000)
    assert m == 1_600
    goal, obs, next_obs = batch.obs[:m, d], batch.obs[:m], batch.next_obs[:m]
    assert torch.equal(next_obs[:, d], goal)  # both ends of the transition carry the new goal
    assert torch.equal(goal[:, EPISODE], obs[:, a][:, EPISODE])  # its own episode
    assert (goal[:, T] >= obs[:, a][:, T] + 1).all()  # at or after the transition: achieved by its next obs or later
    episode_in_flight = goal[:, EPISODE] == collector.envs.envs[0].unwrapped.episode
    assert (goal[:, T] <= 5).all() and (goal[~episode_in_flight, T] <= 5).all()
    assert (goal[episode_in_flight, T] <= 3).all()  # 23 = 4 * 5 + 3: the open episodes have 3 transitions stored
    # Every future step is drawn: the achieved goal t + 1 ... up to the episode's end.
    assert set(goal[:, T].tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # The reward is the env's for the new goal: 0 exactly where the next observation achieved it.
    hit = (next_obs[:, a] == goal).all(dim=1)
    torch.testing.assert_close(batch.reward[:m], torch.where(hit, 0.0, -1.0))
    assert 0.1 < hit.float().mean() < 0.9
    # The rest of the batch keeps the env's goal and reward.
    assert (batch.obs[m:, d] == -1).all() and (batch.reward[m:] == -1).all()


def test_with_n_step_returns_each_reward_of_the_sum_is_computed_for_the_new_goal():
    buffer, columns, _ = filled_buffer(steps=30, n_step=3)
    a, d = columns["achieved_goal"], columns["desired_goal"]
    batch = buffer.sample(1_000)
    m = buffer.hindsight.share(1_000)
    start, goal = batch.obs[:m, a][:, T], batch.obs[:m, d][:, T]  # t of the transition, and the goal's step
    k = torch.round(torch.log(batch.discount[:m]) / np.log(0.5))  # steps in each sum
    # Episodes truncate at t = 5: a sum stops there; its i-th reward is 0 where step t + i + 1 is the goal's.
    torch.testing.assert_close(k, torch.clamp(5 - start, max=3))
    expected = sum(torch.where((i < k) & (start + i + 1 != goal), -(0.5 ** i), 0.0) for i in range(3))
    torch.testing.assert_close(batch.reward[:m], expected)
    torch.testing.assert_close(batch.next_obs[:m, a][:, T], start + k)
    assert torch.equal(batch.next_obs[:m, d], batch.obs[:m, d])


def test_relabelling_goes_on_correctly_once_the_buffer_wraps_around():
    buffer, columns, collector = filled_buffer(steps=57, capacity=40)  # 114 rows written into 40
    a, d = columns["achieved_goal"], columns["desired_goal"]
    batch = buffer.sample(2_000)
    m = buffer.hindsight.share(2_000)
    goal, obs = batch.obs[:m, d], batch.obs[:m]
    assert torch.equal(goal[:, EPISODE], obs[:, a][:, EPISODE])
    assert (goal[:, T] >= obs[:, a][:, T] + 1).all() and (goal[:, T] <= 5).all()


def test_episode_lengths_stay_with_their_own_episode_when_the_capacity_is_not_a_multiple_of_the_envs():
    # 3 sub-envs writing into 10 rows, episodes of 1 to 8 steps ending at random: after every step, each stored row
    # of an ended episode knows that episode's length, and a row of an episode in flight says -1.
    columns = {"achieved_goal": slice(0, 1), "desired_goal": slice(1, 2)}
    hindsight = Hindsight(columns, lambda a, d, info: 0.0, None, 4, capacity=10, num_envs=3,
                          device=torch.device("cpu"))
    rng = np.random.default_rng(0)
    owner, lengths, episode, step, pos, stored = {}, {}, [0, 1, 2], [0, 0, 0], 0, 0
    for _ in range(200):
        rows = np.arange(pos, pos + 3) % 10
        ended = np.array([step[i] + 1 >= rng.integers(1, 9) for i in range(3)])
        for i, row in enumerate(rows):
            owner[int(row)] = episode[i]
        pos, stored = (pos + 3) % 10, min(stored + 3, 10)
        hindsight.record(rows, ended, stored)
        for i in range(3):
            step[i] += 1
            if ended[i]:
                lengths[episode[i]], episode[i], step[i] = step[i], max(episode) + 1, 0
        for row, ep in owner.items():
            assert hindsight.length[row] == lengths.get(ep, -1)


def test_a_compute_terminated_that_judges_a_batch_as_one_pair_is_asked_pair_by_pair():
    # Gymnasium-Robotics' episodic mazes: bool(norm(achieved - desired) <= 0.45), without an axis.
    def one_verdict(achieved, desired, info):
        return bool(np.linalg.norm(achieved - desired) <= 0.45)

    columns = {"achieved_goal": slice(0, 2), "desired_goal": slice(2, 4)}
    hindsight = Hindsight(columns, lambda a, d, info: np.zeros(len(a)), one_verdict, 4, capacity=10, num_envs=1,
                          device=torch.device("cpu"))
    next_obs = torch.tensor([[[0.0, 0.0, 0.0, 0.0]], [[0.1, 0.0, 0.0, 0.0]], [[3.0, 0.0, 0.0, 0.0]]])  # (M, n, O)
    _, terminated = hindsight.rewards(next_obs, torch.zeros(3, 2))
    assert terminated[:, 0].tolist() == [1.0, 1.0, 0.0]
    fetch = Hindsight(columns, lambda a, d, info: np.zeros(len(a)), lambda a, d, info: False, 4, capacity=10,
                      num_envs=1, device=torch.device("cpu"))
    assert not fetch.terminated_per_pair  # a constant for the batch is broadcast, not asked pair by pair
    assert fetch.rewards(next_obs, torch.zeros(3, 2))[1][:, 0].tolist() == [0.0, 0.0, 0.0]


def test_the_relabelling_state_travels_with_the_buffer():
    buffer, _, _ = filled_buffer(steps=23)
    copy, _, _ = filled_buffer(steps=1)
    copy.load_state_dict(buffer.state_dict())
    for b in (buffer, copy):
        assert b.hindsight.in_flight.tolist() == [3, 3]
    first, second = buffer.sample(64), copy.sample(64)
    assert all(torch.equal(x, y) for x, y in zip(first, second))


def test_her_refuses_an_env_without_goals():
    with pytest.raises(UserError, match="goal-conditioned.*'Pendulum-v1' has Box observations"):
        make_hindsight(make_env("Pendulum-v1"), Config(her=True), torch.device("cpu"))


def test_success_rate_is_logged_in_training_and_evaluation(tiny, tmp_path):
    summary = train(tiny(env="PointGoal-v0", her=True, total_steps=300, eval_every=150, eval_episodes=3))
    run = summary.checkpoint.parent.parent
    rows = (run / "evaluations.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "success_rate" and len(rows) == 3  # at 150, and the final one
    assert all(0.0 <= float(row.split(",")[-1]) <= 1.0 for row in rows[1:])
    _, steps, rates = read_run(run, "eval/success_rate")  # what plot.py --metric eval/success_rate draws
    assert steps.tolist() == [150, 300] and rates.tolist() == [float(row.split(",")[-1]) for row in rows[1:]]
    pendulum = train(tiny(run_dir=str(tmp_path / "pendulum"), eval_every=150))
    rows = (pendulum.checkpoint.parent.parent / "evaluations.csv").read_text().splitlines()
    assert all(row.endswith(",") for row in rows[1:])  # Pendulum says nothing of success
    assert len(read_run(pendulum.checkpoint.parent.parent, "eval/success_rate")[1]) == 0


def test_a_goal_env_trained_without_her_says_that_her_exists(tiny, tmp_path, capsys):
    train(tiny(env="PointGoal-v0", total_steps=100, run_dir=str(tmp_path / "plain")))
    assert "note: 'PointGoal-v0' is goal-conditioned" in capsys.readouterr().err
    train(tiny(env="PointGoal-v0", her=True, total_steps=100, run_dir=str(tmp_path / "her")))
    train(tiny(total_steps=100, run_dir=str(tmp_path / "pendulum")))
    assert "goal-conditioned" not in capsys.readouterr().err


@pytest.mark.parametrize("env_id", ["PointGoal-v0", "PointGoalSaysSuccess-v0"])  # is_success, or success
def test_success_is_read_from_either_key_of_the_info(env_id):
    def to_goal(obs):  # straight at the goal: desired_goal - achieved_goal, 0.2 a step at most
        return np.clip((obs[:, 2:4] - obs[:, 0:2]) / 0.2, -1.0, 1.0)

    assert run_episodes(to_goal, make_env(env_id), episodes=3, seed=0).successes.tolist() == [1.0] * 3
    collector = Collector(make_vector_env(env_id, 2), seed=0)
    collector.start()
    ended = []
    while not ended:
        _, ended, _ = collector.step(to_goal(collector.obs).astype(np.float32))
    assert [success for _, _, success in ended] == [1.0, 1.0]


def test_a_dict_policy_acts_on_the_dict_and_on_its_flat_form_and_resumes_exactly(tiny, tmp_path):
    common = dict(env="PointGoal-v0", her=True, total_steps=400, normalize_obs=True, sac={"n_step": 3})
    straight = train(tiny(run_dir=str(tmp_path / "straight"), **common))
    train(tiny(run_dir=str(tmp_path / "split"), **{**common, "total_steps": 190}))  # mid-episode (25 steps each)
    resumed = resume(tmp_path / "split", {"total_steps": 400})
    a, b = agent_tensors(straight.checkpoint), agent_tensors(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]

    policy = load_policy(straight.checkpoint)
    assert policy.obs_keys == [("achieved_goal", 2), ("desired_goal", 2), ("observation", 2)]
    raw = gym.make("PointGoal-v0")
    obs, _ = raw.reset(seed=3)
    flat = np.concatenate([obs["achieved_goal"], obs["desired_goal"], obs["observation"]])
    np.testing.assert_array_equal(policy.act(obs), policy.act(flat))
    batch = {key: np.stack([value, value]) for key, value in obs.items()}
    np.testing.assert_array_equal(policy.act(batch), policy.act(np.stack([flat, flat])))
    with pytest.raises(ValueError, match="the keys achieved_goal, desired_goal, observation"):
        policy.act({"observation": obs["observation"]})
    assert policy.act({key: value[None] for key, value in obs.items()}).shape == (1, 2)  # a batch of one
    policy.check_env(raw)  # a Dict env of the right keys and sizes fits
    other = PointGoal()  # the same flat size, from other keys
    other.observation_space = gym.spaces.Dict({"desired_goal": gym.spaces.Box(-1, 1, (2,)),
                                               "observation": gym.spaces.Box(-1, 1, (4,))})
    with pytest.raises(UserError, match=r"observes the keys achieved_goal \(2\).*the env given observes the keys "
                                        r"desired_goal \(2\), observation \(4\)"):
        policy.check_env(other)
    exported = torch.export.load(export_policy(policy, tmp_path / "policy.pt2")).module()
    with torch.no_grad():
        np.testing.assert_allclose(exported(torch.as_tensor(flat)[None]).numpy()[0], policy.act(obs), atol=1e-6)


def test_a_resumed_run_shows_the_success_rates_it_had(tiny, tmp_path):
    train(tiny(env="PointGoal-v0", her=True, total_steps=200, eval_every=200, eval_episodes=2, log_every=50))
    trainer = resume_trainer(tmp_path / "run", {"total_steps": 400})
    try:
        stats = trainer._progress_stats()  # the progress line's figures before the resumed run's first log
    finally:
        trainer.close()
    assert {"success", "eval success"} <= set(stats)


def test_evaluate_reports_the_success_rate(tiny, tmp_path):
    summary = train(tiny(env="toy_envs:PointGoal-v0", total_steps=200))  # an id that imports its module
    out = script("evaluate.py", summary.checkpoint, "--episodes", "4", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert 0.0 <= result["success_rate"] <= 1.0 and "success rate" in out.stderr
    out = script("export.py", summary.checkpoint, "--hub-folder", tmp_path / "folder", "--episodes", "2")
    assert out.returncode == 0, out.stderr
    card = (tmp_path / "folder" / "README.md").read_text()
    assert "Success rate: **" in card and "`achieved_goal` (2), `desired_goal` (2), `observation` (2)" in card
    assert load_policy(tmp_path / "folder").obs_keys == load_policy(summary.checkpoint).obs_keys
    out = script("train.py", "--env", "Pendulum-v1", "--her", "--total-steps", "10", "--wandb", "disabled",
                 "--run-dir", tmp_path / "pendulum")
    assert out.returncode == 2 and out.stderr.startswith("error: --her needs a goal-conditioned environment")
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_her_learns_to_reach_goals_that_sparse_rewards_alone_do_not_teach(tiny, tmp_path):
    # At 6,000 steps, with the defaults (SAC 256x256): 0.95 with relabelling, 0.0 without (seed 1, 20 episodes).
    def success(her):
        summary = train(tiny(env="PointGoal-v0", her=her, total_steps=6_000, learning_starts=1_000, batch_size=256,
                             eval_episodes=20, run_dir=str(tmp_path / f"her-{her}"), agent=SACConfig()))
        rows = (summary.checkpoint.parent.parent / "evaluations.csv").read_text().splitlines()
        return float(rows[-1].split(",")[-1])
    assert success(her=True) >= 0.7
    assert success(her=False) <= 0.2


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(has("gymnasium_robotics"), reason="gymnasium-robotics is installed: the Fetch envs load")
@pytest.mark.parametrize("env_id", ["FetchReach-v4", "PointMaze_UMaze-v3", "AdroitHandDoor-v1"])
def test_a_robotics_env_without_its_package_says_how_to_install_it(env_id):
    with pytest.raises(UserError, match=rf"'{env_id}' comes with gymnasium_robotics.*pathwise-rl\[robotics\]"):
        make_env(env_id)


@pytest.mark.skipif(not has("gymnasium_robotics"), reason='the Fetch tasks need pip install -e ".[robotics]"')
def test_fetch_reach_trains_from_its_preset_with_hindsight(tiny, tmp_path):
    from pathwise.cli import parse_args

    config, _, _ = parse_args(["--env", "FetchReach-v4", "--total-steps", "300", "--learning-starts", "100",
                               "--eval-episodes", "2", "--wandb", "disabled", "--threads", "1",
                               "--run-dir", str(tmp_path / "run")])
    assert config.her and config.normalize_obs and config.agent.gamma == 0.95
    summary = train(config)
    assert summary.eval_success_rate is not None
    assert load_policy(summary.checkpoint).obs_keys == [("achieved_goal", 3), ("desired_goal", 3), ("observation", 10)]


@pytest.mark.skipif(has("shimmy"), reason="shimmy is installed: the DeepMind Control tasks load")
def test_a_dmc_task_without_shimmy_says_how_to_install_it():
    with pytest.raises(UserError, match=r"'dm_control/cartpole-swingup-v0' comes with shimmy.*pathwise-rl\[dmc\]"):
        make_env("dm_control/cartpole-swingup-v0")


@pytest.mark.skipif(not has("shimmy"), reason='the DeepMind Control tasks need pip install -e ".[dmc]"')
def test_a_dmc_task_trains_on_its_dict_observations(tiny):
    summary = train(tiny(env="dm_control/cartpole-swingup-v0", total_steps=300))
    assert summary.eval_success_rate is None  # DMC says nothing of success
    assert load_policy(summary.checkpoint).obs_keys == [("position", 3), ("velocity", 2)]


@pytest.mark.skipif(not has("shimmy"), reason='the DeepMind Control tasks need pip install -e ".[dmc]"')
def test_a_dmc_task_opens_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its float64 action bounds once overflowed a float32 cast when rescaled
        env = make_env("dm_control/cartpole-swingup-v0")
    assert env.action_space.dtype == np.float64 and (env.action_space.low == -1).all()
    env.close()


def test_a_run_begun_before_success_rates_were_recorded_keeps_its_columns(tmp_path):
    from pathwise.logger import Logger

    (tmp_path / "evaluations.csv").write_text("env_steps,return_mean,return_std,length_mean\n1000,-5.0,1.0,50.0\n")
    logger = Logger(tmp_path, Config(wandb="disabled", tensorboard=False))
    logger.log_eval(2000, -4.0, 1.0, 50.0, success_rate=0.5)
    logger.close()
    assert (tmp_path / "evaluations.csv").read_text().splitlines()[-1] == "2000,-4.0000,1.0000,50.0"
