"""MovieRec-v1: registration, spaces, reward/termination/truncation rules, jit+vmap, and that
the observation carries enough to beat a random recommender."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.envs import movie_rec

pytestmark = pytest.mark.timeout(120)

ENV, PARAMS = envs.make("MovieRec-v1")
K, G = ENV.num_candidates, ENV.num_genres
REWARDS = (movie_rec.CLICK_REWARD, movie_rec.MISS_REWARD, movie_rec.CHURN_REWARD)


def _split_obs(obs):
    cand = obs[..., :K * G].reshape(*obs.shape[:-1], K, G)
    recommended = obs[..., K * G:K * G + K]
    clicked = obs[..., K * G + K:K * G + K + G]
    missed = obs[..., K * G + K + G:K * G + K + 2 * G]
    return cand, recommended, clicked, missed


def _split_match(obs):
    """The per-candidate match with the clicks and with the misses."""
    start = K * G + K + 2 * G
    return obs[..., start:start + K], obs[..., start + K:start + 2 * K]


def random_policy(key, obs, state):
    return jax.random.randint(key, (), 0, K)


def matching_policy(key, obs, state):
    """Fresh candidate most like the clicked movies (random tie-break, so random before the
    first click); recommended ones only once every candidate has been tried."""
    cand, recommended, clicked, _ = _split_obs(obs)
    score = cand @ clicked - recommended + 1e-3 * jax.random.uniform(key, (K,))
    return jnp.argmax(score)


def _affinities(state):
    return jnp.asarray(ENV.catalog)[state.candidates] @ state.pref


def worst_policy(key, obs, state):
    """Cheats: always the candidate the user likes least."""
    return jnp.argmin(_affinities(state))


def best_policy(key, obs, state):
    """Cheats: always the candidate the user likes most."""
    return jnp.argmax(_affinities(state))


def run_steps(policy, key, num_envs, num_steps):
    """`num_steps` of `num_envs` auto-resetting envs; every step's outputs, stacked [T, N]."""
    return _runner(policy, num_envs, num_steps)(key)


@functools.lru_cache(maxsize=None)
def _runner(policy, num_envs, num_steps):
    step = jax.vmap(ENV.step, in_axes=(0, 0, 0, None))

    def go(key):
        key, k0 = jax.random.split(key)
        obs, state = jax.vmap(ENV.reset, in_axes=(0, None))(jax.random.split(k0, num_envs), PARAMS)

        def body(carry, k):
            obs, state = carry
            ka, ks = jax.random.split(k)
            action = jax.vmap(policy)(jax.random.split(ka, num_envs), obs, state)
            obs2, state2, reward, _, _, info = step(jax.random.split(ks, num_envs), state, action, PARAMS)
            out = {**info, "obs": obs, "action": action, "candidates": state.candidates,
                   "reward": reward, "next_obs": obs2}
            return (obs2, state2), out

        return jax.lax.scan(body, (obs, state), jax.random.split(key, num_steps))[1]

    return jax.jit(go)


def session_returns(policy, key, num_sessions):
    """Return, length and churn of the first session of each of `num_sessions` envs."""
    out = run_steps(policy, key, num_sessions, PARAMS.max_steps_in_episode)
    done = out["terminated"] | out["truncated"]
    alive = jnp.concatenate([jnp.ones_like(done[:1]), ~jnp.cumsum(done, 0)[:-1].astype(bool)])
    returns = (out["reward"] * alive).sum(0)
    lengths = alive.sum(0)
    churned = (out["terminated"] & alive).any(0)
    return np.asarray(returns), np.asarray(lengths), np.asarray(churned)


def test_registered_and_creatable():
    assert "MovieRec-v1" in envs.registered_ids()
    env, params = envs.make("MovieRec-v1")
    assert isinstance(env, movie_rec.MovieRec)
    assert params.max_steps_in_episode == 20
    assert env.action_space(params).n == K == env.num_actions == 10
    assert env.catalog.shape == (50, 8)
    assert set(np.unique(env.catalog)) <= {0.0, 1.0} and (env.catalog.sum(1) >= 1).all()


def test_obs_shape_dtype_and_bounds():
    space = ENV.observation_space(PARAMS)
    obs, state = ENV.reset(jax.random.key(0), PARAMS)
    assert obs.shape == space.shape == (K * G + 3 * K + 2 * G + 3,)
    assert obs.dtype == jnp.float32
    out = run_steps(random_policy, jax.random.key(1), 64, 60)
    for name in ("obs", "next_obs", "final_observation"):
        x = np.asarray(out[name])
        assert x.shape[-1:] == space.shape and x.dtype == np.float32
        assert (x >= space.low).all() and (x <= space.high).all(), name
        assert np.isfinite(x).all()
    # the candidate block is the catalog rows of the session's candidates
    np.testing.assert_array_equal(np.asarray(_split_obs(out["obs"])[0]),
                                  ENV.catalog[np.asarray(out["candidates"])])


def test_rewards_termination_truncation_and_info():
    out = jax.device_get(run_steps(random_policy, jax.random.key(2), 64, 60))
    reward, term, trunc = out["reward"], out["terminated"], out["truncated"]
    assert np.isin(reward, np.float32(REWARDS)).all()
    np.testing.assert_array_equal(reward == np.float32(movie_rec.CHURN_REWARD), term)
    assert term.any() and trunc.any()  # both endings occur
    # a click never churns, and click <=> +1
    np.testing.assert_array_equal(out["clicked"], reward == np.float32(movie_rec.CLICK_REWARD))
    assert out["clicked"].dtype == np.bool_ and out["movie"].dtype == np.int32
    picked = np.take_along_axis(out["candidates"], out["action"][..., None], -1)[..., 0]
    np.testing.assert_array_equal(out["movie"], picked)
    # session lengths: never beyond 20, truncated exactly at step 20
    length = np.zeros(reward.shape[1], int)
    for t in range(reward.shape[0]):
        length += 1
        assert (length <= 20).all()
        np.testing.assert_array_equal(trunc[t], length == 20)
        length[term[t] | trunc[t]] = 0
    # the time fraction restarts with each session
    assert np.allclose(out["obs"][0, :, -1], 0.0)


def test_observation_tracks_the_session():
    obs, state = ENV.reset(jax.random.key(3), PARAMS)
    obs2, state2, reward, term, trunc, info = ENV.step(jax.random.key(4), state, 3, PARAMS)
    cand, recommended, clicked, missed = _split_obs(obs2)
    genres = ENV.catalog[int(info["movie"])]
    np.testing.assert_array_equal(recommended, np.eye(K)[3])
    np.testing.assert_allclose(clicked if info["clicked"] else missed, genres)
    np.testing.assert_allclose(missed if info["clicked"] else clicked, 0.0)
    assert float(obs2[-1]) == pytest.approx(1 / 20)
    # match features: dot with the clicked / missed mean, per genre of the candidate
    cand_np = np.asarray(cand)
    click_match, miss_match = _split_match(obs2)
    np.testing.assert_allclose(click_match, cand_np @ np.asarray(clicked) / cand_np.sum(1), rtol=1e-6)
    np.testing.assert_allclose(miss_match, cand_np @ np.asarray(missed) / cand_np.sum(1), rtol=1e-6)
    overlap = cand_np @ genres / cand_np.sum(1)  # the recommended movie matches itself fully
    assert overlap[3] == 1.0
    np.testing.assert_allclose(click_match if info["clicked"] else miss_match, overlap, rtol=1e-6)


def test_deterministic_for_the_same_key():
    a = jax.device_get(run_steps(random_policy, jax.random.key(5), 64, 60))
    b = jax.device_get(run_steps(random_policy, jax.random.key(5), 64, 60))
    c = jax.device_get(run_steps(random_policy, jax.random.key(6), 64, 60))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["obs"], c["obs"])


def test_jit_vmap_64_sessions_and_vec_env():
    keys = jax.random.split(jax.random.key(7), 64)
    obs, state = jax.jit(jax.vmap(ENV.reset, in_axes=(0, None)))(keys, PARAMS)
    step = jax.jit(jax.vmap(ENV.step, in_axes=(0, 0, 0, None)))
    obs, state, reward, term, trunc, info = step(keys, state, jnp.arange(64) % K, PARAMS)
    assert obs.shape == (64, ENV.obs_size) and reward.shape == term.shape == (64,)
    assert info["clicked"].shape == info["movie"].shape == (64,)
    vec, params = envs.make_vec("MovieRec-v1", 64)
    obs, vstate = vec.reset(jax.random.key(8), params)
    actions = jnp.zeros(64, jnp.int32)
    obs, vstate, reward, term, trunc, info = jax.jit(vec.step)(jax.random.key(9), vstate, actions, params)
    assert obs.shape == (64, ENV.obs_size) and "episode_return" in info and "movie" in info


def test_matching_policy_beats_random():
    # measured (2000 sessions, 4 seeds): random -4.8 to -5.3, matching +0.2 to +0.8 (s.e. of
    # each mean ~0.2); margin 5.0 to 6.0; churn 0.76 vs 0.54
    rand, _, rand_churn = session_returns(random_policy, jax.random.key(10), 2000)
    match, _, match_churn = session_returns(matching_policy, jax.random.key(11), 2000)
    assert rand.mean() < -3.0
    assert match.mean() - rand.mean() > 3.5, (match.mean(), rand.mean())
    assert match_churn.mean() < rand_churn.mean() - 0.1


def test_churn_rises_with_consecutive_misses():
    # a user whose only genre none of the candidates has: every recommendation is a likely miss
    _, state = ENV.reset(jax.random.key(12), PARAMS)
    absent = int(np.argmin(ENV.catalog[np.asarray(state.candidates)].sum(0)))
    assert ENV.catalog[np.asarray(state.candidates)][:, absent].sum() == 0
    state = state.replace(pref=jnp.eye(G, dtype=jnp.float32)[absent])
    p_miss = 1.0 - float(ENV.click_probability(state, 0))
    keys = jax.random.split(jax.random.key(13), 4000)

    @jax.jit
    def churn_rate_(misses_before, repeated):
        s = state.replace(consecutive_misses=misses_before, recommended=state.recommended.at[0].set(repeated))
        return jax.vmap(lambda k: ENV.step_env(k, s, 0, PARAMS)[3])(keys).mean()

    def churn_rate(misses_before, repeated=False):
        return float(churn_rate_(jnp.int32(misses_before), jnp.bool_(repeated)))

    rates = [churn_rate(c) for c in (0, 1, 3, 9)]
    assert rates[0] == 0.0  # the first miss in a row never churns a fresh recommendation
    assert rates[0] < rates[1] < rates[2] < rates[3], rates
    for c, rate in zip((0, 1, 3, 9), rates):  # the documented formula, within sampling noise
        assert abs(rate - p_miss * movie_rec.CHURN_PER_MISS * max(c + 1 - movie_rec.CHURN_GRACE, 0)) < 0.04
    assert churn_rate(3, repeated=True) > rates[2] + 0.02  # repetition adds to churn

    # end to end: always the least liked candidate churns sooner than always the most liked
    # (measured: churn 0.99 vs 0.43, session length 6.5 vs 15.8)
    _, worst_len, worst_churn = session_returns(worst_policy, jax.random.key(14), 500)
    _, best_len, best_churn = session_returns(best_policy, jax.random.key(15), 500)
    assert worst_churn.mean() > best_churn.mean() + 0.3
    assert worst_len.mean() < best_len.mean() - 5
