"""Combiners and PBT's exploit/explore against plain numpy computations."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import combine

pytestmark = pytest.mark.timeout(120)


class State(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    env_state: Any


class HP(NamedTuple):
    lr: Any
    gamma: Any
    clip_eps: Any


P = 6


def population(seed=0):
    rng = np.random.default_rng(seed)
    state = State(params={"w": rng.normal(size=(P, 3, 2)).astype(np.float32), "b": rng.normal(size=(P, 2)).astype(np.float32)},
                  target_params={"w": rng.normal(size=(P, 3, 2)).astype(np.float32)},
                  opt_state=(rng.normal(size=(P, 4)).astype(np.float32), np.arange(P, dtype=np.int32)),
                  env_state=rng.normal(size=(P, 5)).astype(np.float32))
    hparams = HP(lr=rng.uniform(1e-4, 1e-3, P).astype(np.float32), gamma=np.full(P, 0.99, np.float32),
                 clip_eps=rng.uniform(0.1, 0.3, P).astype(np.float32))
    return state, hparams


SCORES = np.array([3.0, np.nan, 10.0, -2.0, 7.0, 100.0], np.float32)
VALID = np.array([True, True, True, True, True, False])  # the last member is padding


def test_mean_params_is_the_plain_and_the_softmax_weighted_mean():
    state, _ = population()
    uniform = combine.mean_params(state, jnp.asarray(SCORES), jnp.asarray(VALID))
    for name in ("params", "target_params"):
        for leaf, got in zip(jax.tree.leaves(getattr(state, name)), jax.tree.leaves(getattr(uniform, name))):
            expected = leaf[VALID].mean(axis=0)
            np.testing.assert_allclose(np.asarray(got), np.broadcast_to(expected, leaf.shape), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(uniform.env_state), state.env_state)  # untouched
    np.testing.assert_array_equal(np.asarray(uniform.opt_state[0]), state.opt_state[0])

    weighted = combine.mean_params(state, jnp.asarray(SCORES), jnp.asarray(VALID), temperature=5.0)
    scores = np.where(np.isnan(SCORES), -np.inf, SCORES)
    logits = np.where(VALID, scores / 5.0, -np.inf)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    expected = np.tensordot(weights, state.params["w"], axes=1)
    np.testing.assert_allclose(np.asarray(weighted.params["w"][3]), expected, rtol=1e-5, atol=1e-6)


def test_best_and_fixed_member_broadcast_networks_and_optimiser_state():
    state, _ = population()
    best = combine.best_member(state, jnp.asarray(SCORES), jnp.asarray(VALID))
    assert int(combine.best_index(jnp.asarray(SCORES), jnp.asarray(VALID))) == 2  # padding's 100 ignored
    for member in range(P):
        np.testing.assert_array_equal(np.asarray(best.params["w"][member]), state.params["w"][2])
        np.testing.assert_array_equal(np.asarray(best.target_params["w"][member]), state.target_params["w"][2])
        np.testing.assert_array_equal(np.asarray(best.opt_state[1][member]), 2)
    np.testing.assert_array_equal(np.asarray(best.env_state), state.env_state)
    fixed = combine.fixed_member(state, 4)
    np.testing.assert_array_equal(np.asarray(fixed.params["b"]), np.broadcast_to(state.params["b"][4], (P, 2)))


def numpy_pbt_sources(scores, valid, fraction, draws):
    """Reference: rank valid members (NaN worst); the bottom ceil(f*n) take the top member that
    `draws[i]` picks among the top ceil(f*n) (worst to best order)."""
    valid_idx = [i for i in range(len(scores)) if valid[i]]
    key = lambda i: -np.inf if np.isnan(scores[i]) else scores[i]  # noqa: E731
    ordered = sorted(valid_idx, key=key)  # stable: ties keep index order
    cut = int(np.ceil(fraction * len(valid_idx)))
    bottom, top = ordered[:cut], ordered[len(ordered) - cut:]
    sources = np.arange(len(scores))
    for i in bottom:
        sources[i] = top[draws[i]]
    return sources, np.isin(np.arange(len(scores)), bottom)


@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.5])
def test_pbt_sources_copy_the_top_into_the_bottom(fraction):
    key = jax.random.PRNGKey(3)
    sources, replaced = combine.pbt_sources(key, jnp.asarray(SCORES), jnp.asarray(VALID), fraction)
    cut = int(np.ceil(fraction * VALID.sum()))
    draws = np.asarray(jax.random.randint(key, (P,), 0, max(cut, 1)))
    expected_sources, expected_replaced = numpy_pbt_sources(SCORES, VALID, fraction, draws)
    np.testing.assert_array_equal(np.asarray(sources), expected_sources)
    np.testing.assert_array_equal(np.asarray(replaced), expected_replaced)
    assert not replaced[5] and sources[5] == 5  # padding is neither replaced nor copied from
    assert 5 not in np.asarray(sources)[np.asarray(replaced)]


def test_exploit_copies_exactly_the_chosen_members_and_perturbs_their_hyperparameters():
    state, hparams = population()
    key = jax.random.PRNGKey(7)
    new_state, new_hp, sources = combine.exploit_explore(
        key, state, hparams, jnp.asarray(SCORES), jnp.asarray(VALID), 0.4, names=("lr", "gamma"),
        factors=(0.8, 1.2), bounds={"gamma": (0.0, 1.0)})
    sources = np.asarray(sources)
    exploit_key, explore_key = jax.random.split(key)
    expected_sources, replaced = numpy_pbt_sources(
        SCORES, VALID, 0.4, np.asarray(jax.random.randint(exploit_key, (P,), 0, 2)))
    np.testing.assert_array_equal(sources, expected_sources)
    assert replaced.sum() == 2 and set(np.flatnonzero(replaced)) == {1, 3}  # NaN and -2: the worst
    for name in ("params", "target_params", "opt_state"):
        for old, new in zip(jax.tree.leaves(getattr(state, name)), jax.tree.leaves(getattr(new_state, name))):
            np.testing.assert_array_equal(np.asarray(new), old[sources])  # exactly the chosen members
            assert new.shape == old.shape
    np.testing.assert_array_equal(np.asarray(new_state.env_state), state.env_state)  # own experience kept
    lr_keys = jax.random.split(explore_key, 2)
    factors = np.array([0.8, 1.2], np.float32)
    lr_factor = factors[np.asarray(jax.random.randint(lr_keys[0], (P,), 0, 2))]
    gamma_factor = factors[np.asarray(jax.random.randint(lr_keys[1], (P,), 0, 2))]
    copied_lr, copied_gamma = hparams.lr[sources], hparams.gamma[sources]
    np.testing.assert_allclose(np.asarray(new_hp.lr), np.where(replaced, copied_lr * lr_factor, copied_lr), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new_hp.gamma),
                               np.where(replaced, np.clip(copied_gamma * gamma_factor, 0, 1), copied_gamma), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(new_hp.clip_eps), hparams.clip_eps[sources])  # copied, not perturbed


def test_combiners_run_jitted_on_a_population():
    state, hparams = population()
    jitted = jax.jit(lambda s, sc, v: combine.mean_params(s, sc, v))
    out = jitted(state, jnp.asarray(SCORES), jnp.asarray(VALID))
    assert jax.tree.structure(out) == jax.tree.structure(jax.tree.map(jnp.asarray, state))
