import numpy as np
import pytest

from pathwise.envs import make_env, make_vector_env
from pathwise.errors import UserError


def test_agent_actions_in_unit_box_reach_the_env_bounds():
    env = make_env("CounterTerminates-v0")  # its own bounds: [-3, 5]
    assert env.action_space.low.tolist() == [-1, -1] and env.action_space.high.tolist() == [1, 1]
    assert env.unwrapped.action_space.low.tolist() == [-3, -3]
    env.reset(seed=0)
    env.step(np.array([1.0, -1.0], np.float32))  # the Counter asserts the action is inside [-3, 5]


def test_unknown_env_id_names_close_ids():
    with pytest.raises(UserError, match="did you mean.*Pendulum-v1"):
        make_env("Pendulm-v1")


def test_discrete_action_space_is_refused():
    with pytest.raises(UserError, match="Discrete action space.*continuous Box"):
        make_env("CartPole-v1")


def test_unbounded_action_space_is_refused():
    with pytest.raises(UserError, match="unbounded action space"):
        make_env("Unbounded-v0")


def test_vector_env_does_not_reset_by_itself():
    envs = make_vector_env("CounterTruncates-v0", 2)
    envs.reset(seed=0)
    for _ in range(2):
        envs.step(np.zeros((2, 2), np.float32))
    obs, _, _, truncated, _ = envs.step(np.zeros((2, 2), np.float32))
    assert truncated.all() and obs[:, 0].tolist() == [3, 3]  # the true last observation, not a reset one
    obs, _ = envs.reset(seed=[5, None], options={"reset_mask": np.array([True, False])})
    assert obs[:, 0].tolist() == [0, 3]


def test_making_a_mujoco_env_leaves_out_mujocos_notice_about_gymnasiums_models_and_keeps_its_other_warnings(capfd):
    mujoco = pytest.importorskip("mujoco")
    make_env("HalfCheetah-v5").close()
    assert "settotalmass" not in capfd.readouterr().err
    handler = mujoco.get_mju_user_warning()
    handler("something else went wrong")
    assert "MuJoCo warning: something else went wrong" in capfd.readouterr().err


def test_action_repeat_holds_each_action_sums_its_rewards_and_stops_at_the_episodes_end():
    held, plain = make_env("Pendulum-v1", action_repeat=3), make_env("Pendulum-v1")
    obs, _ = held.reset(seed=5)
    np.testing.assert_array_equal(obs, plain.reset(seed=5)[0])
    rng = np.random.default_rng(0)
    for i in range(67):  # Pendulum's time limit is 200 steps: 66 whole actions, then one of 2 steps
        action = rng.uniform(-1, 1, 1).astype(np.float32)
        obs, reward, _, truncated, _ = held.step(action)
        total = 0.0
        for _ in range(3 if i < 66 else 2):
            plain_obs, plain_reward, _, plain_truncated, _ = plain.step(action)
            total += plain_reward
        np.testing.assert_array_equal(obs, plain_obs)
        assert reward == pytest.approx(total) and truncated == plain_truncated == (i == 66)
    counter = make_env("CounterTerminates-v0", action_repeat=2)  # terminates at its third step
    counter.reset(seed=0)
    assert [counter.step(np.zeros(2))[:3] for _ in range(2)] == [([2.0], 2.0, False), ([3.0], 1.0, True)]
    assert make_env("Pendulum-v1", action_repeat=2).metadata["render_fps"] == 15  # a video has a frame an action
