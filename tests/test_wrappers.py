"""Env wrappers (episode statistics, flattening, normalisation) against plain-python references."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import struct

import jaxrl.envs as envs
from jaxrl.envs import EnvParams, EnvState, Environment, RunningMeanStd, UnknownEnvError, make, make_vec

pytestmark = pytest.mark.timeout(300)

MAX_STEPS = 5
PRIOR_COUNT = 1e-4  # RunningMeanStd's initial count (with mean 0, var 1)


# --------------------------------------------------------------------------- a tiny deterministic env


@struct.dataclass
class CounterState(EnvState):
    total: jax.Array  # running return of the episode


class CounterEnv(Environment):
    """Reward at in-episode step t (0-based) is t + 1; action 1 terminates; time limit 5.

    Observation after a step: [time, 10 * action + time, running return]; after a reset: zeros.
    """

    @property
    def default_params(self):
        return EnvParams(max_steps_in_episode=MAX_STEPS)

    def step_env(self, key, state, action, params):
        time = state.time + 1
        reward = time.astype(jnp.float32)
        total = state.total + reward
        terminated = action == 1
        obs = jnp.stack([time, 10 * action + time, total]).astype(jnp.float32)
        return obs, CounterState(time=time, total=total), reward, terminated, {"time": time}

    def reset_env(self, key, params):
        state = CounterState(time=jnp.asarray(0, jnp.int32), total=jnp.asarray(0.0, jnp.float32))
        return jnp.zeros(3, jnp.float32), state

    def action_space(self, params):
        return envs.spaces.Discrete(3)

    def observation_space(self, params):
        return envs.spaces.Box(-jnp.inf, jnp.inf, (3,), jnp.float32)


# Per-env action schedules (time-major [T, N]): truncations every 5 steps, consecutive
# terminations, termination on the very step the time limit hits (both flags), and a mix.
SCHEDULE = np.array([
    # env0 env1 env2 env3
    [0, 1, 2, 0],
    [0, 1, 2, 1],
    [0, 0, 2, 0],
    [0, 1, 2, 2],
    [0, 0, 1, 2],  # env0: truncated (t=5); env2: terminated AND truncated
    [0, 0, 0, 1],
    [0, 0, 0, 1],
    [0, 0, 1, 0],
    [0, 2, 0, 0],  # env1: truncated
    [0, 1, 2, 0],  # env0: truncated
    [0, 1, 2, 2],
    [2, 1, 0, 0],  # env3: truncated
    [1, 0, 0, 1],
], np.int32)


def simulate(schedule, max_steps=MAX_STEPS):
    """Plain-python run of CounterEnv under `schedule`, with auto-reset."""
    T, N = schedule.shape
    out = {k: np.zeros((T, N) + s, d) for k, s, d in [
        ("obs", (3,), np.float64), ("final_obs", (3,), np.float64), ("reward", (), np.float64),
        ("terminated", (), bool), ("truncated", (), bool), ("done", (), bool),
        ("ep_return", (), np.float64), ("ep_length", (), np.int64)]}
    for n in range(N):
        time, total = 0, 0.0
        for t in range(T):
            a = int(schedule[t, n])
            time += 1
            reward = float(time)
            total += reward
            final_obs = [time, 10 * a + time, total]
            terminated, truncated = a == 1, time >= max_steps
            out["reward"][t, n] = reward
            out["final_obs"][t, n] = final_obs
            out["terminated"][t, n], out["truncated"][t, n] = terminated, truncated
            out["done"][t, n] = terminated or truncated
            if terminated or truncated:
                out["ep_return"][t, n], out["ep_length"][t, n] = total, time
                time, total = 0, 0.0
                out["obs"][t, n] = [0, 0, 0]
            else:
                out["obs"][t, n] = final_obs
    return out


def rollout(vec, params, schedule, seed=0, state=None):
    """Drives a wrapper chain through the schedule; returns the reset output and per-step outputs."""
    step = jax.jit(lambda k, s, a: vec.step(k, s, a, params))
    key = jax.random.PRNGKey(seed)
    if state is None:
        key, sub = jax.random.split(key)
        obs0, state = jax.jit(lambda k: vec.reset(k, params))(sub)
    else:
        obs0 = None
    steps = []
    for t in range(schedule.shape[0]):
        key, sub = jax.random.split(key)
        obs, state, reward, terminated, truncated, info = step(sub, state, jnp.asarray(schedule[t]))
        steps.append(dict(obs=np.asarray(obs), reward=np.asarray(reward), terminated=np.asarray(terminated),
                          truncated=np.asarray(truncated), info=jax.tree.map(np.asarray, info),
                          state=state))
    return obs0, steps, state


def pooled_stats(batches):
    """Mean/var of all rows of `batches` pooled with the prior (mean 0, var 1, count 1e-4)."""
    data = np.concatenate([np.asarray(b, np.float64).reshape(len(b), -1) for b in batches], 0)
    count = PRIOR_COUNT + data.shape[0]
    mean = data.sum(0) / count
    # E[x^2] over prior + data, prior contributes count0 * (var0 + mean0^2) = count0
    var = (PRIOR_COUNT + (data ** 2).sum(0)) / count - mean ** 2
    return mean, var, count


# --------------------------------------------------------------------------- episode statistics


def test_simulation_covers_the_interesting_cases():
    sim = simulate(SCHEDULE)
    both = sim["terminated"] & sim["truncated"]
    assert both.any()
    assert (sim["terminated"] & ~sim["truncated"]).any()
    assert (sim["truncated"] & ~sim["terminated"]).any()
    assert (sim["terminated"][1:] & sim["terminated"][:-1]).any()  # consecutive terminations
    assert sim["done"][-1].any()


def test_episode_statistics_across_auto_resets():
    env = CounterEnv()
    params = EnvParams(max_steps_in_episode=MAX_STEPS)
    vec, vparams = make_vec(env, SCHEDULE.shape[1], env_params=params)
    assert vparams == params
    assert isinstance(vec, envs.EpisodeStatistics)
    obs0, steps, _ = rollout(vec, vparams, SCHEDULE)
    sim = simulate(SCHEDULE)
    np.testing.assert_array_equal(np.asarray(obs0), np.zeros((4, 3)))

    for t, out in enumerate(steps):
        info = out["info"]
        ctx = f"step {t}"
        np.testing.assert_array_equal(out["terminated"], sim["terminated"][t], err_msg=ctx)
        np.testing.assert_array_equal(out["truncated"], sim["truncated"][t], err_msg=ctx)
        np.testing.assert_array_equal(info["terminated"], sim["terminated"][t], err_msg=ctx)
        np.testing.assert_array_equal(info["truncated"], sim["truncated"][t], err_msg=ctx)
        np.testing.assert_array_equal(info["episode_done"], sim["done"][t], err_msg=ctx)
        np.testing.assert_allclose(out["reward"], sim["reward"][t], err_msg=ctx)
        np.testing.assert_allclose(out["obs"], sim["obs"][t], err_msg=ctx)
        np.testing.assert_allclose(info["final_observation"], sim["final_obs"][t], err_msg=ctx)
        done = sim["done"][t]
        np.testing.assert_allclose(info["episode_return"][done], sim["ep_return"][t][done], err_msg=ctx)
        np.testing.assert_array_equal(info["episode_length"][done], sim["ep_length"][t][done], err_msg=ctx)
        # Inner env's own info passes through.
        np.testing.assert_array_equal(info["time"], sim["final_obs"][t][:, 0], err_msg=ctx)
        # After an episode end the running totals restart at zero.
        np.testing.assert_allclose(np.asarray(out["state"].episode_return)[done], 0.0, err_msg=ctx)
        np.testing.assert_array_equal(np.asarray(out["state"].episode_length)[done], 0, err_msg=ctx)


def test_episode_statistics_running_totals_between_ends():
    env = CounterEnv()
    vec, params = make_vec(env, SCHEDULE.shape[1])  # default_params of the env object
    assert params.max_steps_in_episode == MAX_STEPS
    _, steps, _ = rollout(vec, params, SCHEDULE, seed=3)
    sim = simulate(SCHEDULE)
    # Elsewhere the running totals are reported: the running return equals obs[2], length obs[0].
    for t, out in enumerate(steps):
        np.testing.assert_allclose(out["info"]["episode_return"], sim["final_obs"][t][:, 2])
        np.testing.assert_array_equal(out["info"]["episode_length"], sim["final_obs"][t][:, 0])
    # Total return over all finished episodes equals the simulation's.
    finished = sum(out["info"]["episode_return"][out["info"]["episode_done"]].sum() for out in steps)
    assert finished == pytest.approx(sum(sim["ep_return"][t][sim["done"][t]].sum() for t in range(len(steps))))


def test_final_observation_is_pre_reset_observation():
    env = CounterEnv()
    vec, params = make_vec(env, SCHEDULE.shape[1])
    _, steps, _ = rollout(vec, params, SCHEDULE)
    saw_end = False
    for out in steps:
        done = out["info"]["episode_done"]
        final = out["info"]["final_observation"]
        np.testing.assert_allclose(final[~done], out["obs"][~done])  # no reset: same obs
        if done.any():
            saw_end = True
            np.testing.assert_allclose(out["obs"][done], 0.0)  # reset obs
            assert (final[done][:, 0] >= 1).all()  # the step's obs, not the reset one
    assert saw_end


def test_vec_env_rejects_zero_envs():
    with pytest.raises(ValueError):
        envs.VecEnv(CounterEnv(), 0)


# --------------------------------------------------------------------------- running mean/std


def test_running_mean_std_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=3.0, scale=2.0, size=(n, 3)).astype(np.float32) for n in (5, 1, 17, 8, 2)]
    stats = RunningMeanStd.create((3,))
    np.testing.assert_array_equal(np.asarray(stats.mean), 0.0)
    np.testing.assert_array_equal(np.asarray(stats.var), 1.0)
    for i, b in enumerate(batches):
        stats = stats.update(jnp.asarray(b))
        mean, var, count = pooled_stats(batches[: i + 1])
        np.testing.assert_allclose(np.asarray(stats.mean), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(stats.var), var, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(float(stats.count), count, rtol=1e-6)
    # And, up to the tiny prior, the plain numpy statistics of the concatenation.
    data = np.concatenate(batches, 0).astype(np.float64)
    np.testing.assert_allclose(np.asarray(stats.mean), data.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(stats.var), data.var(0), rtol=1e-3, atol=1e-3)


def test_running_mean_std_scalar_stream_and_jit():
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=-1.0, scale=0.5, size=n).astype(np.float32) for n in (4, 4, 4)]
    update = jax.jit(lambda s, b: s.update(b))
    stats = RunningMeanStd.create(())
    for b in batches:
        stats = update(stats, jnp.asarray(b))
    mean, var, _ = pooled_stats([b[:, None] for b in batches])
    np.testing.assert_allclose(float(stats.mean), mean[0], rtol=1e-5)
    np.testing.assert_allclose(float(stats.var), var[0], rtol=1e-4)


# --------------------------------------------------------------------------- observation normalisation


def np_normalize(obs, mean, var, clip=10.0, eps=1e-8):
    return np.clip((obs - mean) / np.sqrt(var + eps), -clip, clip)


def test_normalize_observation_uses_running_stats_of_raw_obs():
    env = CounterEnv()
    vec, params = make_vec(env, SCHEDULE.shape[1], normalize_obs=True)
    assert isinstance(vec, envs.NormalizeObservation)
    obs0, steps, _ = rollout(vec, params, SCHEDULE)
    sim = simulate(SCHEDULE)
    raw_seen = [np.zeros((4, 3))]  # the reset observations
    mean, var, _ = pooled_stats(raw_seen)
    np.testing.assert_allclose(np.asarray(obs0), np_normalize(raw_seen[0], mean, var), rtol=1e-4, atol=1e-4)
    for t, out in enumerate(steps):
        raw_seen.append(sim["obs"][t])
        mean, var, count = pooled_stats(raw_seen)
        stats = out["state"].stats
        np.testing.assert_allclose(np.asarray(stats.mean), mean, rtol=1e-4, atol=1e-5, err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(stats.var), var, rtol=1e-4, atol=1e-5, err_msg=f"step {t}")
        np.testing.assert_allclose(float(stats.count), count, rtol=1e-6)
        np.testing.assert_allclose(out["obs"], np_normalize(sim["obs"][t], mean, var),
                                   rtol=1e-4, atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(out["info"]["final_observation"], np_normalize(sim["final_obs"][t], mean, var),
                                   rtol=1e-4, atol=1e-4, err_msg=f"step {t}")
        # Episode statistics stay raw (they sit below the normalisation).
        done = sim["done"][t]
        np.testing.assert_allclose(out["info"]["episode_return"][done], sim["ep_return"][t][done])


def test_normalize_observation_frozen_stats_never_change():
    env = CounterEnv()
    vec, params = make_vec(env, SCHEDULE.shape[1], normalize_obs=True, update_stats=False)
    obs0, steps, _ = rollout(vec, params, SCHEDULE)
    sim = simulate(SCHEDULE)
    np.testing.assert_allclose(np.asarray(obs0), 0.0)
    clipped_somewhere = False
    for t, out in enumerate(steps):
        stats = out["state"].stats
        np.testing.assert_array_equal(np.asarray(stats.mean), np.zeros(3))
        np.testing.assert_array_equal(np.asarray(stats.var), np.ones(3))
        np.testing.assert_allclose(float(stats.count), PRIOR_COUNT)
        expected = np_normalize(sim["obs"][t], 0.0, 1.0)
        np.testing.assert_allclose(out["obs"], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["info"]["final_observation"], np_normalize(sim["final_obs"][t], 0.0, 1.0),
                                   rtol=1e-5, atol=1e-5)
        clipped_somewhere |= bool((np.abs(sim["final_obs"][t]) > 10).any())
    assert clipped_somewhere  # the clip at 10 was exercised (obs[1] = 10 * 2 + t)


def test_reset_from_uses_training_statistics():
    env = CounterEnv()
    train, params = make_vec(env, 4, normalize_obs=True, normalize_reward=True)
    _, _, train_state = rollout(train, params, SCHEDULE)
    obs_stats = train_state.inner.stats
    rew_stats = train_state.stats
    assert float(obs_stats.count) > 1  # the statistics have moved
    assert not np.allclose(np.asarray(obs_stats.var), 1.0)

    # A freshly built frozen chain with a different number of copies.
    frozen, _ = make_vec(env, 2, normalize_obs=True, normalize_reward=True, update_stats=False)
    obs, state = frozen.reset_from(jax.random.PRNGKey(7), params, train_state)
    assert obs.shape == (2, 3)
    mean, var = np.asarray(obs_stats.mean), np.asarray(obs_stats.var)
    np.testing.assert_allclose(np.asarray(obs), np_normalize(np.zeros((2, 3)), mean, var), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(state.inner.stats.mean), mean)
    np.testing.assert_array_equal(np.asarray(state.stats.var), np.asarray(rew_stats.var))
    np.testing.assert_array_equal(np.asarray(state.discounted_return), np.zeros(2))
    ep_state = state.inner.inner
    np.testing.assert_array_equal(np.asarray(ep_state.episode_return), np.zeros(2))
    np.testing.assert_array_equal(np.asarray(ep_state.episode_length), np.zeros(2))

    # Stepping the frozen chain keeps using (and never changes) the training statistics.
    schedule = SCHEDULE[:7, :2]
    _, steps, _ = rollout(frozen, params, schedule, state=state)
    sim = simulate(schedule)
    rew_var = float(rew_stats.var)
    for t, out in enumerate(steps):
        np.testing.assert_array_equal(np.asarray(out["state"].inner.stats.mean), mean)
        np.testing.assert_array_equal(np.asarray(out["state"].inner.stats.var), var)
        np.testing.assert_array_equal(np.asarray(out["state"].stats.var), rew_var)
        np.testing.assert_allclose(out["obs"], np_normalize(sim["obs"][t], mean, var), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["reward"], np.clip(sim["reward"][t] / np.sqrt(rew_var + 1e-8), -10, 10),
                                   rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- reward normalisation


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_normalize_reward_scales_by_std_of_discounted_return(gamma):
    env = CounterEnv()
    vec, params = make_vec(env, SCHEDULE.shape[1], normalize_reward=True, gamma=gamma)
    assert isinstance(vec, envs.NormalizeReward)
    _, steps, _ = rollout(vec, params, SCHEDULE)
    sim = simulate(SCHEDULE)
    discounted = np.zeros(SCHEDULE.shape[1])
    seen = []
    clipped, unclipped = False, False
    for t, out in enumerate(steps):
        discounted = discounted * gamma + sim["reward"][t]
        seen.append(discounted[:, None].copy())
        mean, var, _ = pooled_stats(seen)
        np.testing.assert_allclose(float(out["state"].stats.var), var[0], rtol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(out["state"].discounted_return),
                                   np.where(sim["done"][t], 0.0, discounted), rtol=1e-5, err_msg=f"step {t}")
        raw_scaled = sim["reward"][t] / np.sqrt(var[0] + 1e-8)
        np.testing.assert_allclose(out["reward"], np.clip(raw_scaled, -10, 10), rtol=1e-4, err_msg=f"step {t}")
        clipped |= bool((np.abs(raw_scaled) > 10).any())
        unclipped |= bool((np.abs(raw_scaled) < 10).any())
        # Episode statistics report the raw, unscaled return.
        done = sim["done"][t]
        np.testing.assert_allclose(out["info"]["episode_return"][done], sim["ep_return"][t][done])
        discounted = np.where(sim["done"][t], 0.0, discounted)  # the accumulator resets at episode ends
    assert clipped and unclipped


def test_normalize_reward_frozen_keeps_prior():
    env = CounterEnv()
    vec, params = make_vec(env, SCHEDULE.shape[1], normalize_reward=True, update_stats=False)
    _, steps, _ = rollout(vec, params, SCHEDULE)
    sim = simulate(SCHEDULE)
    for t, out in enumerate(steps):
        assert float(out["state"].stats.var) == 1.0
        np.testing.assert_allclose(out["reward"], np.clip(sim["reward"][t] / np.sqrt(1 + 1e-8), -10, 10), rtol=1e-6)


# --------------------------------------------------------------------------- flattening and ids


def test_flatten_observation_minatar():
    vec, params = make_vec("Breakout-MinAtar", 2, flatten_obs=True)
    raw, _ = make_vec("Breakout-MinAtar", 2)
    params = params.replace(max_steps_in_episode=3)  # force a time-limit end within a few steps
    assert isinstance(vec, envs.FlattenObservation)
    assert vec.observation_space(params).shape == (400,)
    assert raw.observation_space(params).shape == (10, 10, 4)

    key = jax.random.PRNGKey(0)
    obs, state = vec.reset(key, params)
    raw_obs, raw_state = raw.reset(key, params)
    assert obs.shape == (2, 400) and obs.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(raw_obs).reshape(2, -1))

    step = jax.jit(lambda k, s, a: vec.step(k, s, a, params))
    raw_step = jax.jit(lambda k, s, a: raw.step(k, s, a, params))
    saw_end = False
    for t in range(4):
        key, sub, akey = jax.random.split(key, 3)
        action = jax.random.randint(akey, (2,), 0, 3)
        obs, state, reward, terminated, truncated, info = step(sub, state, action)
        raw_obs, raw_state, raw_reward, *_ , raw_info = raw_step(sub, raw_state, action)
        assert obs.shape == (2, 400)
        assert info["final_observation"].shape == (2, 400)
        np.testing.assert_array_equal(np.asarray(obs), np.asarray(raw_obs).reshape(2, -1))
        np.testing.assert_array_equal(np.asarray(info["final_observation"]),
                                      np.asarray(raw_info["final_observation"]).reshape(2, -1))
        np.testing.assert_array_equal(np.asarray(reward), np.asarray(raw_reward))
        done = np.asarray(info["episode_done"])
        np.testing.assert_array_equal(done, np.asarray(terminated) | np.asarray(truncated))
        if done.any():
            saw_end = True
    assert saw_end


def test_unknown_env_id_raises_with_suggestions():
    with pytest.raises(UnknownEnvError) as err:
        make("NoSuchEnv-v0")
    assert "NoSuchEnv-v0" in str(err.value)
    assert isinstance(err.value, ValueError)

    with pytest.raises(UnknownEnvError, match="CartPole-v1"):
        make("CartPole-v2")
    with pytest.raises(UnknownEnvError):
        make_vec("CartPole-v2", 2)
    assert "CartPole-v1" in envs.registered_ids()
