"""Policy-gradient losses, schedules and the categorical distribution against numpy formulas."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxrl.networks.distributions import Categorical
from jaxrl.rl.losses import approx_kl, clipped_surrogate_loss, value_loss
from jaxrl.rl.schedules import linear_anneal, linear_decay

pytestmark = pytest.mark.timeout(300)

TOL = dict(rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- surrogate


def np_surrogate(log_prob, old_log_prob, adv, eps):
    ratio = np.exp(log_prob.astype(np.float64) - old_log_prob)
    unclipped = ratio * adv
    clipped = np.clip(ratio, 1 - eps, 1 + eps) * adv
    loss = -np.mean(np.minimum(unclipped, clipped))
    frac = np.mean(np.abs(ratio - 1) > eps)
    return loss, frac


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_clipped_surrogate_matches_numpy(seed, eps):
    rng = np.random.default_rng(seed)
    n = 257
    old = rng.normal(size=n).astype(np.float32)
    new = (old + rng.normal(scale=0.3, size=n)).astype(np.float32)
    adv = rng.normal(size=n).astype(np.float32)
    ratio = np.exp(new.astype(np.float64) - old)
    keep = np.abs(np.abs(ratio - 1) - eps) > 1e-4  # stay away from the exact clip boundary
    new, old, adv = new[keep], old[keep], adv[keep]
    loss, extras = clipped_surrogate_loss(jnp.asarray(new), jnp.asarray(old), jnp.asarray(adv),
                                          clip_eps=eps, return_extras=True)
    frac = extras["clip_fraction"]
    ref_loss, ref_frac = np_surrogate(new, old, adv, eps)
    assert 0.0 < ref_frac < 1.0  # both regimes present
    np.testing.assert_allclose(float(loss), ref_loss, **TOL)
    np.testing.assert_allclose(float(frac), ref_frac, **TOL)


def test_clipped_surrogate_hand_cases():
    eps = 0.2
    # ratio, advantage -> min(r A, clip(r) A)
    ratios = np.array([1.5, 1.5, 0.5, 0.5, 1.1, 1.0])
    adv = np.array([1.0, -1.0, 1.0, -1.0, 2.0, 3.0], np.float32)
    # 1.5*+1: min(1.5, 1.2) = 1.2    1.5*-1: min(-1.5, -1.2) = -1.5
    # 0.5*+1: min(0.5, 0.8) = 0.5    0.5*-1: min(-0.5, -0.8) = -0.8
    # 1.1*2:  2.2                    1.0*3:  3.0
    objective = np.array([1.2, -1.5, 0.5, -0.8, 2.2, 3.0])
    old = np.zeros(6, np.float32)
    new = np.log(ratios).astype(np.float32)
    loss, extras = clipped_surrogate_loss(jnp.asarray(new), jnp.asarray(old), jnp.asarray(adv),
                                          clip_eps=eps, return_extras=True)
    frac = extras["clip_fraction"]
    np.testing.assert_allclose(float(loss), -objective.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(frac), 4 / 6, rtol=1e-6)


def test_clipped_surrogate_identical_policies():
    adv = jnp.asarray([1.0, -2.0, 0.5, 4.0])
    lp = jnp.asarray([-0.1, -2.0, -1.3, -0.7])
    loss, extras = clipped_surrogate_loss(lp, lp, adv, clip_eps=0.2, return_extras=True)
    np.testing.assert_allclose(float(loss), -np.mean([1.0, -2.0, 0.5, 4.0]), rtol=1e-6)
    assert float(extras["clip_fraction"]) == 0.0


def test_clipped_surrogate_is_a_scalar_by_default_and_masks_like_numpy():
    rng = np.random.default_rng(3)
    old = rng.normal(size=40).astype(np.float32)
    new = (old + rng.normal(scale=0.3, size=40)).astype(np.float32)
    adv = rng.normal(size=40).astype(np.float32)
    mask = rng.random(40) < 0.6
    args = (jnp.asarray(new), jnp.asarray(old), jnp.asarray(adv))
    loss = clipped_surrogate_loss(*args, clip_eps=0.2)
    assert isinstance(loss, jax.Array) and loss.shape == ()
    with_extras, _ = clipped_surrogate_loss(*args, clip_eps=0.2, return_extras=True)
    assert float(loss) == float(with_extras)  # the extras change nothing about the loss
    masked, extras = clipped_surrogate_loss(*args, clip_eps=0.2, mask=jnp.asarray(mask), return_extras=True)
    ref_loss, ref_frac = np_surrogate(new[mask], old[mask], adv[mask], 0.2)
    np.testing.assert_allclose(float(masked), ref_loss, **TOL)
    np.testing.assert_allclose(float(extras["clip_fraction"]), ref_frac, **TOL)
    with pytest.raises(TypeError):
        clipped_surrogate_loss(*args, 0.2)  # clip_eps is keyword-only


# --------------------------------------------------------------------------- value loss


def np_value_loss(values, old_values, targets, eps, clip):
    values, old_values, targets = (x.astype(np.float64) for x in (values, old_values, targets))
    err = (values - targets) ** 2
    if clip:
        clipped = old_values + np.clip(values - old_values, -eps, eps)
        err = np.maximum(err, (clipped - targets) ** 2)
    return 0.5 * err.mean()


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_value_loss_matches_numpy(clip, eps):
    rng = np.random.default_rng(11)
    n = 200
    old = rng.normal(size=n).astype(np.float32)
    values = (old + rng.normal(scale=0.5, size=n)).astype(np.float32)
    targets = rng.normal(size=n).astype(np.float32)
    clipping = dict(old_values=jnp.asarray(old), clip_eps=eps) if clip else {}
    got = value_loss(jnp.asarray(values), jnp.asarray(targets), **clipping)
    np.testing.assert_allclose(float(got), np_value_loss(values, old, targets, eps, clip), **TOL)


def test_value_loss_clipping_is_pessimistic_and_hand_case():
    # v=2, old=0, target=0, eps=0.5: unclipped 4, clipped (0.5)^2 = 0.25 -> max 4 -> 0.5*4 = 2
    # v=2, old=0, target=3, eps=0.5: unclipped 1, clipped (0.5-3)^2 = 6.25 -> 6.25
    values = jnp.asarray([2.0, 2.0])
    old = jnp.asarray([0.0, 0.0])
    targets = jnp.asarray([0.0, 3.0])
    np.testing.assert_allclose(float(value_loss(values, targets, old_values=old, clip_eps=0.5)),
                               0.5 * (4.0 + 6.25) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(value_loss(values, targets)), 0.5 * (4.0 + 1.0) / 2, rtol=1e-6)
    rng = np.random.default_rng(12)
    v, o, t = (jnp.asarray(rng.normal(size=50).astype(np.float32)) for _ in range(3))
    assert float(value_loss(v, t, old_values=o, clip_eps=0.2)) >= float(value_loss(v, t))


@pytest.mark.parametrize("clip", [True, False])
def test_value_loss_mask_matches_numpy_on_the_kept_entries(clip):
    rng = np.random.default_rng(13)
    old, values, targets = (rng.normal(size=60).astype(np.float32) for _ in range(3))
    mask = rng.random(60) < 0.5
    clipping = dict(old_values=jnp.asarray(old), clip_eps=0.3) if clip else {}
    got = value_loss(jnp.asarray(values), jnp.asarray(targets), mask=jnp.asarray(mask), **clipping)
    expected = np_value_loss(values[mask], old[mask], targets[mask], 0.3, clip)
    np.testing.assert_allclose(float(got), expected, **TOL)


def test_value_loss_needs_both_or_neither_clipping_argument():
    v = jnp.ones(3)
    with pytest.raises(ValueError, match="old_values without clip_eps"):
        value_loss(v, v, old_values=v)
    with pytest.raises(ValueError, match="clip_eps without old_values"):
        value_loss(v, v, clip_eps=0.2)
    with pytest.raises(TypeError):
        value_loss(v, v, v, 0.2)  # the clipping arguments are keyword-only


# --------------------------------------------------------------------------- approx KL


def test_approx_kl_matches_numpy():
    rng = np.random.default_rng(13)
    old = rng.normal(size=300).astype(np.float32)
    new = (old + rng.normal(scale=0.4, size=300)).astype(np.float32)
    log_ratio = new.astype(np.float64) - old
    expected = np.mean(np.exp(log_ratio) - 1 - log_ratio)
    np.testing.assert_allclose(float(approx_kl(jnp.asarray(new), jnp.asarray(old))), expected, **TOL)
    assert expected > 0
    assert float(approx_kl(jnp.asarray(old), jnp.asarray(old))) == 0.0


def test_approx_kl_estimates_true_kl():
    # Sample actions from `old`, evaluate the estimator; its mean is KL(old || new).
    p_old = np.array([0.2, 0.5, 0.3])
    p_new = np.array([0.3, 0.3, 0.4])
    actions = np.random.default_rng(14).choice(3, size=200_000, p=p_old)
    est = float(approx_kl(jnp.asarray(np.log(p_new)[actions], jnp.float32),
                          jnp.asarray(np.log(p_old)[actions], jnp.float32)))
    true_kl = float(np.sum(p_old * np.log(p_old / p_new)))
    np.testing.assert_allclose(est, true_kl, rtol=0.05)


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("final_fraction", [0.0, 0.1, 0.5])
def test_linear_decay_matches_numpy(final_fraction):
    initial, total = 3e-4, 100
    steps = np.array([0, 1, 25, 50, 99, 100, 101, 500])
    got = np.asarray(jax.vmap(lambda s: linear_decay(initial, s, total, final_fraction))(jnp.asarray(steps)))
    progress = np.clip(steps / total, 0, 1)
    expected = initial * (1 - (1 - final_fraction) * progress)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(got[0], initial, rtol=1e-6)
    np.testing.assert_allclose(got[-1], initial * final_fraction, rtol=1e-5, atol=1e-12)


def test_linear_decay_jit_and_zero_total():
    fn = jax.jit(lambda s: linear_decay(2.0, s, 4, 0.25))
    # progress 0, .25, .5, .75, 1 -> 2 * (1 - 0.75 p) = 2, 1.625, 1.25, 0.875, 0.5
    np.testing.assert_allclose([float(fn(s)) for s in range(5)], [2.0, 1.625, 1.25, 0.875, 0.5], rtol=1e-6)
    # total_steps = 0 is treated as 1: step 0 -> initial, step >= 1 -> final
    assert float(linear_decay(2.0, 0, 0)) == pytest.approx(2.0)
    assert float(linear_decay(2.0, 5, 0, 0.5)) == pytest.approx(1.0)


def test_linear_decay_vmaps_over_total_steps_like_a_numpy_loop():
    totals = np.array([0, 1, 3, 10, 100], np.int32)  # one per population member
    steps = np.array([0, 1, 2, 5, 50, 200], np.int32)
    got = jax.jit(jax.vmap(lambda total: jax.vmap(lambda s: linear_decay(2.0, s, total, 0.25))(steps)))(
        jnp.asarray(totals))
    expected = np.empty((len(totals), len(steps)))
    for i, total in enumerate(totals):
        for j, step in enumerate(steps):
            progress = min(max(step / max(int(total), 1), 0.0), 1.0)
            expected[i, j] = 2.0 * (1.0 - 0.75 * progress)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    # and the same numbers as a Python-int total_steps
    for i, total in enumerate(totals):
        np.testing.assert_array_equal(
            np.asarray(got[i]), np.asarray(jax.vmap(lambda s: linear_decay(2.0, s, int(total), 0.25))(steps)))


def test_linear_anneal_moves_from_start_to_end_then_stays():
    steps = np.array([0, 10, 25, 50, 100, 1000], np.float32)
    durations = np.array([50.0, 100.0, 0.0], np.float32)
    anneal = jax.vmap(lambda duration: linear_anneal(1.0, 0.05, jnp.asarray(steps), duration))
    got = np.asarray(anneal(jnp.asarray(durations)))
    for row, duration in zip(got, durations):
        progress = np.clip(steps / max(duration, 1e-9), 0.0, 1.0)
        np.testing.assert_allclose(row, 1.0 + (0.05 - 1.0) * progress, rtol=1e-6)
    assert got[0, 0] == pytest.approx(1.0) and got[0, -1] == pytest.approx(0.05)
    assert got[2, 0] == pytest.approx(1.0) and got[2, 1] == pytest.approx(0.05)  # no duration: at once


# --------------------------------------------------------------------------- categorical


def np_log_softmax(logits):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_categorical_log_prob_entropy_mode():
    rng = np.random.default_rng(20)
    logits = (rng.normal(size=(2, 3, 5)) * 2).astype(np.float32)
    actions = rng.integers(0, 5, size=(2, 3))
    dist = Categorical(jnp.asarray(logits))
    logp = np_log_softmax(logits)
    probs = np.exp(logp)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-12)

    expected_lp = np.take_along_axis(logp, actions[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(dist.log_prob(jnp.asarray(actions))), expected_lp, **TOL)
    # Float actions (as stored in rollout buffers) are accepted too.
    np.testing.assert_allclose(np.asarray(dist.log_prob(jnp.asarray(actions, jnp.float32))),
                               expected_lp, **TOL)
    np.testing.assert_allclose(np.asarray(dist.log_probs), logp, **TOL)
    np.testing.assert_allclose(np.asarray(dist.entropy()), -(probs * logp).sum(-1), **TOL)
    np.testing.assert_array_equal(np.asarray(dist.mode()), logits.argmax(-1))


def test_categorical_entropy_extremes_and_shift_invariance():
    uniform = Categorical(jnp.zeros((4,)))
    np.testing.assert_allclose(float(uniform.entropy()), np.log(4), rtol=1e-6)
    peaked = Categorical(jnp.asarray([0.0, 50.0, 0.0]))
    assert 0.0 <= float(peaked.entropy()) < 1e-6
    logits = jnp.broadcast_to(jnp.asarray([0.3, -1.2, 2.0]), (3, 3))  # one row per action
    a, b = Categorical(logits), Categorical(logits + 100.0)
    np.testing.assert_allclose(np.asarray(a.log_prob(jnp.arange(3))), np.asarray(b.log_prob(jnp.arange(3))),
                               atol=1e-4)


def test_categorical_sample_frequencies():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    n = 40_000
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(probs, jnp.float32)), (n, 4))
    samples = np.asarray(Categorical(logits).sample(jax.random.PRNGKey(0)))
    assert samples.shape == (n,)
    assert samples.min() >= 0 and samples.max() <= 3
    freqs = np.bincount(samples, minlength=4) / n
    # std of each frequency is at most sqrt(.25 / 40000) = 0.0025
    np.testing.assert_allclose(freqs, probs, atol=0.015)

    # Different keys give different samples; the same key the same ones.
    again = np.asarray(Categorical(logits).sample(jax.random.PRNGKey(0)))
    other = np.asarray(Categorical(logits).sample(jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(samples, again)
    assert (samples != other).mean() > 0.3


def test_categorical_is_a_pytree_and_jittable():
    logits = jnp.asarray([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])

    @jax.jit
    def f(dist, key):
        return dist.sample(key), dist.entropy(), dist.mode()

    sample, entropy, mode = f(Categorical(logits), jax.random.PRNGKey(3))
    assert sample.shape == (2,)
    np.testing.assert_array_equal(np.asarray(mode), [1, 2])
    logp = np_log_softmax(np.asarray(logits))
    np.testing.assert_allclose(np.asarray(entropy), -(np.exp(logp) * logp).sum(-1), **TOL)
    leaves = jax.tree_util.tree_leaves(Categorical(logits))
    assert len(leaves) == 1
