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


# ---- through training -------------------------------------------------------------------

TINY = ["total_env_steps=8192", "log_every_env_steps=2048", "eval.episodes=2", "env.num_envs=4",
        "algo.num_steps=32", "algo.num_minibatches=2", "checkpoint.every_env_steps=2048"]


@pytest.mark.timeout(600)
def test_pbt_run_replaces_the_bottom_with_perturbed_copies_of_the_top_and_resumes_exactly(tmp_path):
    import json
    import shutil

    from jaxrl import config as config_lib
    from jaxrl.experiment.run_dir import read_metrics
    from jaxrl.experiment.train import interrupted, train

    config = config_lib.load("configs/ppo_cartpole.yaml", TINY + [
        "seeds=8", "pbt.every_env_steps=2048", "pbt.fraction=0.25", "pbt.hyperparameters=[lr,clip_eps]"])
    train(config, tmp_path / "pbt", progress=False)
    rows = read_metrics(tmp_path / "pbt" / "metrics.csv")
    chunks = sorted({int(r["env_steps"]) for r in rows})
    for before, after in zip(chunks, chunks[1:]):
        old = {int(r["seed"]): r for r in rows if int(r["env_steps"]) == before}
        new = {int(r["seed"]): r for r in rows if int(r["env_steps"]) == after}
        if after == chunks[-1]:
            break
        returns = np.array([float(old[m]["episode_return"] or "nan") for m in range(8)])
        ranked = sorted(range(8), key=lambda m: (-np.inf if np.isnan(returns[m]) else returns[m], m))
        bottom, top = set(ranked[:2]), set(ranked[-2:])
        parents = {m: int(float(old[m]["pbt_parent"])) for m in range(8)}
        assert {m for m in range(8) if parents[m] != m} == bottom and all(parents[m] in top for m in bottom)
        for m in bottom:  # copied from the parent, then multiplied by 0.8 or 1.2
            for name in ("lr", "clip_eps"):
                ratio = float(old[m][f"hp_{name}"]) / float(old[parents[m]][f"hp_{name}"]) if before > chunks[0] else None
                if ratio is not None:
                    assert ratio == pytest.approx(0.8, rel=1e-5) or ratio == pytest.approx(1.2, rel=1e-5) \
                        or float(old[m][f"hp_{name}"]) == 1.0  # clip_eps clipped at 1
        assert set(new) == set(range(8))  # the population keeps its shape
    assert (tmp_path / "pbt" / "plots" / "pbt_hyperparameters.png").stat().st_size > 0

    resumed = tmp_path / "resumed"  # killed after its first checkpoint: hyperparameters come back too
    shutil.copytree(tmp_path / "pbt", resumed)
    steps = sorted(int(p.name) for p in (resumed / "checkpoints").iterdir() if p.name.isdigit())
    for step in steps[1:]:
        shutil.rmtree(resumed / "checkpoints" / str(step))
    (resumed / "summary.json").unlink()
    assert interrupted(resumed)
    train(config, resumed, progress=False, resume=True)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "sps"} for r in rs]  # noqa: E731
    assert strip(read_metrics(resumed / "metrics.csv")) == strip(rows)
    finals = [json.loads((d / "summary.json").read_text())["final_eval"]["per_seed"] for d in (tmp_path / "pbt", resumed)]
    assert finals[0] == finals[1]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", ["fixed", "best", "mean"])
def test_combiners_between_chunks_act_on_the_trained_population(strategy):
    from jaxrl import config as config_lib, population
    from jaxrl.experiment.population_ops import make_between_chunks
    from jaxrl.experiment.train import build

    config = config_lib.load("configs/ppo_cartpole.yaml", TINY + [
        "seeds=3", f"combine.strategy={strategy}", "combine.every_env_steps=2048", "combine.member=1"])
    built = build(config)
    pop = population.Population(built.algo, 3, devices=jax.devices()[:1])
    hook = make_between_chunks(config, pop, built.algo.num_updates, built.updates_per_chunk,
                               built.algo.env_steps_per_update)
    seen = []

    def between(report, state, hparams):
        before = jax.device_get(state.params)
        state, hparams, extra = hook(report, state, hparams)
        seen.append((report, before, jax.device_get(state.params)))
        return state, hparams, extra

    population.run(built.algo, 3, updates_per_chunk=built.updates_per_chunk, between_chunks=between,
                   population=pop)
    report, before, after = seen[0]
    returns = report.metrics["episode_return"]
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        old, new = np.asarray(old), np.asarray(new)
        expected = {"fixed": old[1], "best": old[int(np.nanargmax(returns))], "mean": old.mean(axis=0)}[strategy]
        for member in range(3):
            np.testing.assert_allclose(new[member], expected, rtol=1e-5, atol=1e-6)
    last_report, last_before, last_after = seen[-1]  # nothing changes after the last chunk
    for old, new in zip(jax.tree.leaves(last_before), jax.tree.leaves(last_after)):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
