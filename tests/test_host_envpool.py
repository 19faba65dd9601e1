"""The EnvPool host backend: same spaces and step record as the gymnasium backend, same-step
auto-reset with correct episode statistics, async stepping, seeding and clear errors."""

import sys

import numpy as np
import pytest

pytest.importorskip("envpool")

from jaxrl.envs.host.common import HostEnvError  # noqa: E402
from jaxrl.envs.host.envpool_backend import EnvPoolBatch  # noqa: E402

ENV_ID = "LunarLander-v3"
START_Y = 1.41  # LunarLander's lander starts near the top of the screen (y of about 1.40-1.42)


def random_actions(num_envs: int, steps: int, seed: int = 0) -> np.ndarray:
    """A fixed sequence of random LunarLander actions, [steps, num_envs]."""
    return np.random.default_rng(seed).integers(0, 4, (steps, num_envs))


@pytest.mark.timeout(60)
def test_spaces_and_step_record_match_the_gymnasium_backend():
    pytest.importorskip("Box2D")
    from jaxrl.envs.host.gymnasium_pool import GymnasiumPool

    with GymnasiumPool(ENV_ID, 2, num_workers=1) as ours, EnvPoolBatch(ENV_ID, 2) as pool:
        for a, b in ((ours.observation_space(), pool.observation_space()),
                     (ours.action_space(), pool.action_space())):
            assert type(a) is type(b)
            assert a.shape == b.shape and np.dtype(a.dtype) == np.dtype(b.dtype)
        np.testing.assert_array_equal(ours.observation_space().low, pool.observation_space().low)
        np.testing.assert_array_equal(ours.observation_space().high, pool.observation_space().high)
        assert ours.action_space().n == pool.action_space().n
        assert ours.max_episode_steps == pool.max_episode_steps == 1000
        first_a, first_b = ours.reset(np.array([0, 1])), pool.reset(np.array([0, 1]))
        assert first_a.shape == first_b.shape and first_a.dtype == first_b.dtype
        step_a, step_b = ours.step(np.array([0, 1])), pool.step(np.array([0, 1]))
        for name, x, y in zip(step_a._fields, step_a, step_b):
            assert (x.shape, x.dtype) == (y.shape, y.dtype), name


@pytest.mark.timeout(60)
@pytest.mark.parametrize("standby", [0, 1, None])  # no standby env, fewer than the ends, default
def test_same_step_auto_reset_and_episode_statistics(standby):
    num_envs, steps = 4, 400
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, int)
    ends = 0
    with EnvPoolBatch(ENV_ID, num_envs, seed=7, standby=standby) as env:
        obs = env.reset(np.arange(num_envs) + 7)
        np.testing.assert_allclose(obs[:, 1], START_Y, atol=0.05)
        for actions in random_actions(num_envs, steps):
            step = env.step(actions)
            returns += step.reward
            lengths += 1
            done = step.terminated | step.truncated
            np.testing.assert_array_equal(step.episode_done, done)
            np.testing.assert_array_equal(step.obs[~done], step.final_obs[~done])
            for i in np.flatnonzero(done):
                ends += 1
                assert not np.array_equal(step.obs[i], step.final_obs[i])
                assert step.episode_return[i] == pytest.approx(returns[i], rel=1e-5, abs=1e-3)
                assert step.episode_length[i] == lengths[i]
                assert abs(step.obs[i, 1] - START_Y) < 0.05 and step.obs[i, 6:].sum() == 0  # a fresh start
                assert step.final_obs[i, 1] < 1.0  # the lander came down (or flew off)
                returns[i], lengths[i] = 0.0, 0
            np.testing.assert_array_equal(step.episode_length[~done], lengths[~done])
    assert ends >= 6  # random LunarLander episodes last ~60-150 steps


@pytest.mark.timeout(60)
@pytest.mark.parametrize("standby", [0, 1, 2])
def test_time_limit_truncates_and_restarts(standby):
    """Both envs end together every 10 steps: standby envs take over (and the ended envs are
    reset during the next step to stand by in turn) or, when too few stand by, a synchronous
    reset restarts them; either way every new episode starts at step 0."""
    with EnvPoolBatch(ENV_ID, 2, standby=standby, kwargs={"max_episode_steps": 10}) as env:
        assert env.max_episode_steps == 10
        env.reset(np.array([0, 1]))
        for t, actions in enumerate(np.zeros((25, 2), int), 1):  # no thrust: no crash in 25 steps
            step = env.step(actions)
            assert not step.terminated.any()
            np.testing.assert_array_equal(step.truncated, t % 10 == 0)
            np.testing.assert_array_equal(step.episode_length, (t - 1) % 10 + 1)


@pytest.mark.timeout(60)
def test_async_stepping_matches_step_and_same_seed_is_deterministic():
    num_envs, steps = 3, 150
    with EnvPoolBatch(ENV_ID, num_envs) as a, EnvPoolBatch(ENV_ID, num_envs) as b:
        seeds = np.array([11, 12, 13])
        np.testing.assert_array_equal(a.reset(seeds), b.reset(seeds))
        for actions in random_actions(num_envs, steps, seed=1):
            x = a.step(actions)
            b.step_async(actions)
            _ = sum(range(1000))  # the caller works while EnvPool's threads step
            y = b.step_wait()
            for name, u, v in zip(x._fields, x, y):
                np.testing.assert_array_equal(u, v, err_msg=name)


@pytest.mark.timeout(60)
def test_reset_seeds_are_per_env_and_repeatable():
    with EnvPoolBatch(ENV_ID, 3) as env:
        assert env.per_env_seeds
        first = env.reset(np.array([5, 5, 6]))
        np.testing.assert_array_equal(first[0], first[1])
        assert not np.array_equal(first[0], first[2])
        for actions in random_actions(3, 20):
            env.step(actions)
        np.testing.assert_array_equal(env.reset(np.array([5, 5, 6])), first)  # same seeds, same starts


@pytest.mark.timeout(60)
def test_atari_ids_give_channel_last_frame_stacks():
    with EnvPoolBatch("ALE/Pong-v5", 1) as env:
        space = env.observation_space()
        assert space.shape == (84, 84, 4) and np.dtype(space.dtype) == np.uint8
        assert env.max_episode_steps == 27000
        obs = env.reset(np.array([0]))
        step = env.step(np.array([0]))
        assert obs.shape == step.obs.shape == (1, 84, 84, 4) and step.obs.dtype == np.uint8
        np.testing.assert_array_equal(step.obs[..., :3], obs[..., 1:])  # oldest frame first


@pytest.mark.timeout(30)
def test_unknown_id_suggests_close_matches_and_the_gymnasium_backend():
    with pytest.raises(HostEnvError, match=r"(?s)LunarLander-v9.*Did you mean LunarLander-v3.*gymnasium"):
        EnvPoolBatch("LunarLander-v9", 2)


@pytest.mark.timeout(30)
def test_missing_envpool_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)  # makes `import envpool` fail
    with pytest.raises(HostEnvError, match=r'pip install "jaxrl\[envpool\]"'):
        EnvPoolBatch(ENV_ID, 2)
