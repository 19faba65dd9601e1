"""GAE(λ) against an independent plain-python reference, with terminations and truncations."""

import functools

import numpy as np
import pytest

import jax.numpy as jnp

from jaxrl.rl.gae import gae_advantages

pytestmark = pytest.mark.timeout(300)


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Plain-python loop, one env (column) at a time, walking backwards in time."""
    T, N = rewards.shape
    adv = np.zeros((T, N), np.float64)
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            if terminated[t, n]:
                bootstrap = 0.0  # true end: no value beyond it
            else:
                bootstrap = gamma * float(next_values[t, n])  # incl. truncation: V(final obs)
            delta = float(rewards[t, n]) + bootstrap - float(values[t, n])
            if terminated[t, n] or truncated[t, n]:
                running = delta  # episode ended here: do not chain into the next episode
            else:
                running = delta + gamma * lam * running
            adv[t, n] = running
    return adv, adv + values.astype(np.float64)


def random_batch(seed, T=12, N=5, p_term=0.15, p_trunc=0.15):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    next_values = rng.normal(size=(T, N)).astype(np.float32)
    terminated = rng.random((T, N)) < p_term
    truncated = rng.random((T, N)) < p_trunc
    if N < 5:
        return rewards, values, next_values, terminated, truncated
    # Make sure the interesting patterns are present regardless of the draw.
    terminated[-1, 0], truncated[-1, 0] = True, False  # termination at the last step
    terminated[-1, 1], truncated[-1, 1] = False, True  # truncation at the last step
    terminated[2:5, 2], truncated[2:5, 2] = True, False  # consecutive terminations
    terminated[2:5, 3], truncated[2:5, 3] = False, True  # consecutive truncations
    terminated[6, 4], truncated[6, 4] = True, True  # both flags at once: terminated wins
    terminated[7, 4], truncated[7, 4] = False, True  # truncation right after termination
    terminated[8, 4], truncated[8, 4] = True, False  # termination right after truncation
    return rewards, values, next_values, terminated, truncated


def run_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    adv, targets = gae_advantages(
        jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(next_values),
        jnp.asarray(terminated), jnp.asarray(truncated), gamma=gamma, gae_lambda=lam, time_axis=0,
    )
    return np.asarray(adv), np.asarray(targets)


GAMMA_LAMBDA = [(0.99, 0.95), (0.9, 0.0), (0.9, 1.0), (0.5, 0.7), (1.0, 1.0), (0.0, 0.5)]


@pytest.mark.parametrize("gamma,lam", GAMMA_LAMBDA)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_python_reference(seed, gamma, lam):
    batch = random_batch(seed)
    adv, targets = run_gae(*batch, gamma, lam)
    ref_adv, ref_targets = reference_gae(*batch, gamma, lam)
    assert adv.shape == targets.shape == batch[0].shape
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, ref_targets, rtol=1e-5, atol=1e-5)


def test_bool_and_float_flags_agree():
    rewards, values, next_values, terminated, truncated = random_batch(3)
    adv_bool, _ = run_gae(rewards, values, next_values, terminated, truncated, 0.95, 0.9)
    adv_float, _ = run_gae(rewards, values, next_values, terminated.astype(np.float32),
                           truncated.astype(np.float32), 0.95, 0.9)
    np.testing.assert_allclose(adv_bool, adv_float, rtol=1e-6, atol=1e-6)


def test_lambda_zero_is_one_step_td_error():
    rewards, values, next_values, terminated, truncated = random_batch(4)
    gamma = 0.9
    adv, targets = run_gae(rewards, values, next_values, terminated, truncated, gamma, 0.0)
    expected = rewards + gamma * (1.0 - terminated) * next_values - values
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected + values, rtol=1e-5, atol=1e-5)


def test_lambda_one_without_episode_ends_is_bootstrapped_monte_carlo():
    rng = np.random.default_rng(5)
    T, N, gamma = 7, 3, 0.8
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T + 1, N)).astype(np.float32)
    no_end = np.zeros((T, N), bool)
    # Consistent trajectory: next_values[t] == values[t + 1].
    _, targets = run_gae(rewards, values[:-1], values[1:], no_end, no_end, gamma, 1.0)
    for t in range(T):
        ret = sum(gamma ** (k - t) * rewards[k] for k in range(t, T)) + gamma ** (T - t) * values[T]
        np.testing.assert_allclose(targets[t], ret, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_from_next_values_termination_from_zero():
    T, N, gamma, lam = 6, 2, 0.9, 0.8
    rewards, values, next_values, terminated, truncated = random_batch(6, T=T, N=N, p_term=0, p_trunc=0)
    terminated[:] = False
    truncated[:] = False
    truncated[3, 0] = True  # env 0: time-limit cut at t=3
    terminated[3, 1] = True  # env 1: true termination at t=3
    base, _ = run_gae(rewards, values, next_values, terminated, truncated, gamma, lam)

    bumped = next_values.copy()
    bumped[3, :] += 2.0  # change V(final observation) at the episode end
    adv, _ = run_gae(rewards, values, bumped, terminated, truncated, gamma, lam)

    # Truncated: the end step's advantage moves by gamma * 2; earlier steps by the
    # (gamma * lambda)^k-discounted amount, later steps (next episode) not at all.
    diff = adv[:, 0] - base[:, 0]
    expected = np.array([gamma * 2.0 * (gamma * lam) ** (3 - t) if t <= 3 else 0.0 for t in range(T)])
    np.testing.assert_allclose(diff, expected, rtol=1e-5, atol=1e-5)
    # Terminated: next_values at the terminal step is never used.
    np.testing.assert_allclose(adv[:, 1], base[:, 1], rtol=0, atol=1e-6)
    # And the terminal step's advantage is exactly r - V.
    np.testing.assert_allclose(base[3, 1], rewards[3, 1] - values[3, 1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(base[3, 0], rewards[3, 0] + gamma * next_values[3, 0] - values[3, 0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["terminated", "truncated"])
def test_recursion_stops_at_episode_end(kind):
    T, N, gamma, lam = 8, 1, 0.99, 0.95
    rewards, values, next_values, terminated, truncated = random_batch(7, T=T, N=N, p_term=0, p_trunc=0)
    terminated[:] = False
    truncated[:] = False
    (terminated if kind == "terminated" else truncated)[4, 0] = True
    base, _ = run_gae(rewards, values, next_values, terminated, truncated, gamma, lam)

    # Anything that happens in the next episode (t >= 5) must not leak back.
    rewards2, values2, next_values2 = rewards.copy(), values.copy(), next_values.copy()
    rewards2[5:] += 10.0
    values2[5:] -= 3.0
    next_values2[5:] += 7.0
    adv, _ = run_gae(rewards2, values2, next_values2, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(adv[:5], base[:5], rtol=0, atol=1e-6)
    assert not np.allclose(adv[5:], base[5:])

    # Without the episode end the same change does propagate back.
    none = np.zeros_like(terminated)
    base_cont, _ = run_gae(rewards, values, next_values, none, none, gamma, lam)
    adv_cont, _ = run_gae(rewards2, values2, next_values2, none, none, gamma, lam)
    assert not np.allclose(adv_cont[:5], base_cont[:5])


def test_hand_computed_tiny_case():
    # gamma = 0.5, lambda = 0.5 (gamma * lambda = 0.25), one env, T = 3:
    #   t=0: ongoing,    r=1, V=0.5, V(next)=1.0
    #   t=1: truncated,  r=2, V=1.0, V(final obs)=2.0
    #   t=2: terminated, r=3, V=1.5, V(final obs)=4.0 (must be ignored)
    # deltas:
    #   d2 = 3 + 0               - 1.5 = 1.5   (termination: no bootstrap)
    #   d1 = 2 + 0.5 * 2.0       - 1.0 = 2.0   (truncation: bootstrap from final obs)
    #   d0 = 1 + 0.5 * 1.0       - 0.5 = 1.0
    # advantages (recursion cut at t=1 and t=2):
    #   A2 = d2 = 1.5
    #   A1 = d1 = 2.0                        (episode ended: A2 not added)
    #   A0 = d0 + 0.25 * A1 = 1.0 + 0.5 = 1.5
    # targets = A + V = [2.0, 3.0, 3.0]
    rewards = np.array([[1.0], [2.0], [3.0]], np.float32)
    values = np.array([[0.5], [1.0], [1.5]], np.float32)
    next_values = np.array([[1.0], [2.0], [4.0]], np.float32)
    terminated = np.array([[False], [False], [True]])
    truncated = np.array([[False], [True], [False]])
    adv, targets = run_gae(rewards, values, next_values, terminated, truncated, 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0], [1.5, 2.0, 1.5], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(targets[:, 0], [2.0, 3.0, 3.0], rtol=1e-6, atol=1e-6)

    # Same numbers with no episode end at all:
    #   d2 = 3 + 0.5 * 4.0 - 1.5 = 3.5 ; d1 = 2.0 ; d0 = 1.0
    #   A2 = 3.5 ; A1 = 2.0 + 0.25 * 3.5 = 2.875 ; A0 = 1.0 + 0.25 * 2.875 = 1.71875
    none = np.zeros_like(terminated)
    adv, targets = run_gae(rewards, values, next_values, none, none, 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0], [1.71875, 2.875, 3.5], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(targets[:, 0], [2.21875, 3.875, 5.0], rtol=1e-6, atol=1e-6)


def test_traced_gamma_lambda_and_mismatched_shapes():
    import jax

    batch = random_batch(8, T=5, N=3)
    fn = jax.jit(functools.partial(gae_advantages, time_axis=0))
    adv, _ = fn(*(jnp.asarray(x) for x in batch), gamma=jnp.float32(0.9), gae_lambda=jnp.float32(0.7))
    ref, _ = reference_gae(*batch, 0.9, 0.7)
    np.testing.assert_allclose(np.asarray(adv), ref, rtol=1e-5, atol=1e-5)

    rewards, values, next_values, terminated, truncated = batch
    with pytest.raises(AssertionError):
        gae_advantages(jnp.asarray(rewards), jnp.asarray(values[:-1]), jnp.asarray(next_values),
                       jnp.asarray(terminated), jnp.asarray(truncated), gamma=0.9, gae_lambda=0.7,
                       time_axis=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_major_equals_time_major_and_the_reference(seed):
    """[N, T] with time_axis=1 gives the transposed numbers of the [T, N] call, exactly."""
    batch = random_batch(seed)
    time_major = run_gae(*batch, 0.99, 0.95)
    batch_major = gae_advantages(*(jnp.asarray(x.T) for x in batch), gamma=0.99, gae_lambda=0.95,
                                 time_axis=1)
    ref_adv, ref_targets = reference_gae(*batch, 0.99, 0.95)
    for got, same, ref in zip(batch_major, time_major, (ref_adv, ref_targets)):
        assert got.shape == batch[0].T.shape
        np.testing.assert_array_equal(np.asarray(got).T, same)
        np.testing.assert_allclose(np.asarray(got).T, ref, rtol=1e-5, atol=1e-5)


def test_time_axis_of_a_three_dimensional_batch():
    """Time in the middle of [N, T, K]: each [:, :, k] slice is its own batch-major problem."""
    rewards, values, next_values, terminated, truncated = random_batch(9, T=6, N=4)
    stack = lambda x: np.stack([x.T, x.T[::-1]], axis=-1)  # [N, T, 2]
    adv, targets = gae_advantages(*(jnp.asarray(stack(x)) for x in
                                    (rewards, values, next_values, terminated, truncated)),
                                  gamma=0.9, gae_lambda=0.8, time_axis=-2)
    assert adv.shape == targets.shape == (4, 6, 2)
    for k, pick in enumerate((lambda x: x, lambda x: x[:, ::-1])):
        ref_adv, ref_targets = reference_gae(*(pick(x) for x in (rewards, values, next_values,
                                                                  terminated, truncated)), 0.9, 0.8)
        np.testing.assert_allclose(np.asarray(adv[:, :, k]).T, ref_adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(targets[:, :, k]).T, ref_targets, rtol=1e-5, atol=1e-5)


def test_time_axis_and_discounts_must_be_named():
    batch = tuple(jnp.asarray(x) for x in random_batch(10, T=4, N=2))
    with pytest.raises(TypeError, match="time_axis"):
        gae_advantages(*batch, gamma=0.9, gae_lambda=0.9)
    with pytest.raises(TypeError):
        gae_advantages(*batch, 0.9, 0.9, 0)
