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
@pytest.mark.parametrize("strategy", ["fixed", "best", "mean", "jaxrl.combine:best_networks"])
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
        opt_before = jax.device_get(state.opt_state)
        state, hparams, extra = hook.apply(report, state, hparams)
        seen.append((report, before, jax.device_get(state.params)))
        if strategy == "jaxrl.combine:best_networks":  # the example keeps each optimiser state
            for old, new in zip(jax.tree.leaves(opt_before), jax.tree.leaves(jax.device_get(state.opt_state))):
                np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
        return state, hparams, extra

    population.run(built.algo, 3, updates_per_chunk=built.updates_per_chunk, between_chunks=between,
                   population=pop)
    report, before, after = seen[0]
    returns = report.metrics["episode_return"]
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        old, new = np.asarray(old), np.asarray(new)
        best = old[int(np.nanargmax(returns))]
        expected = {"fixed": old[1], "best": best, "mean": old.mean(axis=0),
                    "jaxrl.combine:best_networks": best}[strategy]
        for member in range(3):
            np.testing.assert_allclose(new[member], expected, rtol=1e-5, atol=1e-6)
    last_report, last_before, last_after = seen[-1]  # nothing changes after the last chunk
    for old, new in zip(jax.tree.leaves(last_before), jax.tree.leaves(last_after)):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))


# ---- schedules: env steps, updates, episodes ----------------------------------------------

def load(*overrides):
    from jaxrl import config as config_lib

    return config_lib.load("configs/ppo_cartpole.yaml", list(overrides))


@pytest.mark.parametrize("section", ["pbt", "combine"])
def test_a_schedule_takes_at_most_one_of_env_steps_updates_and_episodes(section):
    from jaxrl.errors import ConfigError

    extra = ["pbt.hyperparameters=[lr]"] if section == "pbt" else ["combine.strategy=mean"]
    with pytest.raises(ConfigError, match=rf"{section}: set at most one of {section}.every_env_steps, "
                                          rf"{section}.every_updates, {section}.every_episodes .*"
                                          rf"{section}.every_updates=5 and {section}.every_episodes=10"):
        load(*extra, f"{section}.every_updates=5", f"{section}.every_episodes=10")
    with pytest.raises(ConfigError, match=rf"{section}.every_episodes must be >= 0"):
        load(*extra, f"{section}.every_episodes=-1")
    for key in ("every_env_steps", "every_updates", "every_episodes"):
        config = load(*extra, f"{section}.{key}=7")
        assert getattr(getattr(config, section), key) == 7
    assert load("pbt.hyperparameters=[lr]", "pbt.every_updates=3").pbt.enabled and not load().pbt.enabled


def test_combine_strategies_need_a_schedule_and_data_parallel_takes_none():
    from jaxrl.errors import ConfigError

    with pytest.raises(ConfigError, match="combine.strategy mean needs a schedule: set one of combine.every_env_steps"):
        load("combine.strategy=mean")
    with pytest.raises(ConfigError, match="data_parallel averages gradients at every gradient step"):
        load("combine.strategy=data_parallel", "combine.every_updates=2")
    with pytest.raises(ConfigError, match="must be one of none, mean, weighted_mean, best, fixed, data_parallel "
                                          "or a function given as module:function"):
        load("combine.strategy=avg")
    with pytest.raises(ConfigError, match="must name a function as module:function"):
        load("combine.strategy=:keep_best", "combine.every_updates=1")
    assert load("combine.strategy=my.module:fn", "combine.every_episodes=4").combine.strategy == "my.module:fn"


def test_schedules_round_updates_and_env_steps_up_to_whole_chunks_and_count_episodes():
    from types import SimpleNamespace

    from jaxrl.experiment.population_ops import Schedule, chunk_episodes, due, schedule_of

    section = lambda **kw: SimpleNamespace(**{"every_env_steps": 0, "every_updates": 0, "every_episodes": 0, **kw})  # noqa: E731
    assert schedule_of(section(every_updates=7), updates_per_chunk=3, env_steps_per_update=64) == Schedule(3, 0)
    assert schedule_of(section(every_updates=6), 3, 64) == Schedule(2, 0)
    assert schedule_of(section(every_env_steps=200), 3, 64) == Schedule(2, 0)  # chunks of 192 steps
    assert schedule_of(section(every_episodes=40), 3, 64) == Schedule(0, 40)
    assert schedule_of(section(), 3, 64) == Schedule() and not Schedule().on
    assert [c for c in range(9) if due(Schedule(3, 0), c, 0.0)] == [2, 5, 8]
    assert not due(Schedule(0, 40), 0, 39.9) and due(Schedule(0, 40), 0, 40.0)
    assert not due(Schedule(), 5, 1e9)
    assert chunk_episodes({"episodes": np.array([3.0, 5.0, 7.0])}) == 5.0


def test_episode_schedules_count_the_episodes_each_chunk_finished():
    """ProbeTimeLimit-v0's episodes last exactly 5 steps, so numpy knows how many end in each
    chunk; PBT and a combiner on episode schedules apply exactly where the counts say."""
    from jaxrl import population
    from jaxrl.experiment.population_ops import make_between_chunks
    from jaxrl.experiment.train import build

    envs, steps, members = 4, 8, 2
    config = load("env.id=ProbeTimeLimit-v0", f"seeds={members}", "total_env_steps=1536", "log_every_env_steps=96",
                  f"env.num_envs={envs}", f"algo.num_steps={steps}", "algo.num_minibatches=2",
                  "algo.network.hidden_sizes=[8]", "pbt.every_episodes=70", "pbt.fraction=0.5",
                  "pbt.hyperparameters=[lr]", "combine.strategy=fixed", "combine.member=1",
                  "combine.every_episodes=50")
    built = build(config)
    updates = built.updates_per_chunk
    chunks = built.algo.num_updates // updates
    per_env = np.floor(np.arange(chunks + 1) * updates * steps / 5)  # episodes ended by each chunk's end
    expected = envs * np.diff(per_env)  # per member, in each chunk
    pop = population.Population(built.algo, members, devices=jax.devices()[:1])
    hook = make_between_chunks(config, pop, built.algo.num_updates, updates, built.algo.env_steps_per_update)
    seen = []

    def between(report, state, hparams):
        before = jax.device_get(state.params)
        state, hparams, extra = hook.apply(report, state, hparams)
        seen.append((report, extra, before, jax.device_get(state.params)))
        return state, hparams, extra

    population.run(built.algo, members, updates_per_chunk=updates, between_chunks=between, population=pop)
    assert len(seen) == chunks
    counters = {"pbt": 0.0, "combine": 0.0}
    applications = {"pbt": 0, "combine": 0}
    for chunk, (report, extra, before, after) in enumerate(seen):
        np.testing.assert_array_equal(report.metrics["episodes"], np.full(members, expected[chunk]))
        last = chunk == chunks - 1
        applied = {}
        for name, every in (("pbt", 70), ("combine", 50)):
            counters[name] += expected[chunk]
            np.testing.assert_array_equal(extra[f"{name}_episodes"], np.full(members, counters[name]))
            applied[name] = counters[name] >= every and not last
            if applied[name]:
                counters[name] = 0.0
                applications[name] += 1
        assert bool(np.any(extra["pbt_parent"] != np.arange(members))) == applied["pbt"], chunk
        for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
            old, new = np.asarray(old), np.asarray(new)
            if applied["combine"]:
                assert all(np.array_equal(new[m], old[1]) for m in range(members)), chunk
            elif not applied["pbt"]:
                np.testing.assert_array_equal(new, old)
    assert applications["pbt"] >= 2 and applications["combine"] >= 3


# ---- custom combiners ---------------------------------------------------------------------

@pytest.mark.timeout(600)
@pytest.mark.parametrize("per_call", [None, 2])
def test_a_custom_combiner_named_by_import_path_sees_the_chunk_and_sets_the_state(tmp_path, per_call):
    """`custom_combiners:first_member_networks` (tests/custom_combiners.py) through `train`:
    whole on one device (jax arrays), and split into calls of 2 members (host numpy arrays,
    one padding member that the stats mark)."""
    import custom_combiners

    from jaxrl.experiment.run_dir import read_metrics
    from jaxrl.experiment.train import train

    config = load(*TINY, "seeds=3", "combine.strategy=custom_combiners:first_member_networks",
                  "combine.every_updates=8", "combine.score=entropy")  # chunks of 16 updates: every chunk
    custom_combiners.CALLS.clear()
    train(config, tmp_path / "run", progress=False, devices=jax.devices()[:1], max_members_per_call=per_call)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    chunks = sorted({int(r["env_steps"]) for r in rows})
    assert len(custom_combiners.CALLS) == len(chunks) - 1  # not after the last chunk
    padded = 4 if per_call else 3
    for call, steps in zip(custom_combiners.CALLS, chunks):
        stats = call["stats"]
        assert stats["env_steps"] == steps and stats["updates_done"] == steps // 128 and stats["chunk"] == steps // 2048 - 1
        np.testing.assert_array_equal(stats["valid"], np.arange(padded) < 3)
        by_seed = {int(r["seed"]): r for r in rows if int(r["env_steps"]) == steps}
        for name in ("entropy", "episodes", "value_loss"):
            assert stats[name].shape == (padded,) and np.all(np.isnan(stats[name][3:]))
            np.testing.assert_allclose(stats[name][:3], [float(by_seed[m][name]) for m in range(3)], rtol=1e-5)
        np.testing.assert_array_equal(stats["score"], stats["entropy"])
        assert call["leaf_types"] == ({np.ndarray} if per_call else {type(jax.numpy.zeros(1))})

    # what the hook does with the combiner's result: every member (padding too) has member 0's
    # params, kept where the population keeps its state (sharded, or host numpy when split)
    from jaxrl import population
    from jaxrl.experiment.population_ops import make_between_chunks
    from jaxrl.experiment.train import build

    built = build(config)
    pop = population.Population(built.algo, 3, devices=jax.devices()[:1], max_members_per_call=per_call)
    hook = make_between_chunks(config, pop, built.algo.num_updates, built.updates_per_chunk,
                               built.algo.env_steps_per_update)
    state = pop.init(population.stream_keys(0, 3, population.INIT_STREAM),
                     pop.members.place(population.broadcast_hparams(built.algo.default_hparams, 3)))
    report = population.ChunkReport(0, 16, 2048, 1.0, {"entropy": np.ones(3)}, None)
    combined, _, _ = hook.apply(report, state, None)
    for old, new in zip(jax.tree.leaves(state.params), jax.tree.leaves(combined.params)):
        assert isinstance(new, np.ndarray) == bool(per_call) and new.shape == (padded,) + old.shape[1:]
        np.testing.assert_array_equal(np.asarray(new), np.broadcast_to(np.asarray(old)[:1], new.shape))
        if not per_call:
            assert new.sharding == pop.members.sharding


def test_bad_custom_combiners_are_refused_naming_the_module_function_and_fix():
    from jaxrl import population
    from jaxrl.errors import ConfigError
    from jaxrl.experiment.population_ops import make_between_chunks
    from jaxrl.experiment.train import build

    config = load(*TINY, "seeds=2", "combine.strategy=custom_combiners:drops_a_member", "combine.every_updates=8")
    built = build(config)
    pop = population.Population(built.algo, 2, devices=jax.devices()[:1])
    make = lambda config, **kw: make_between_chunks(config, pop, built.algo.num_updates,  # noqa: E731
                                                   built.updates_per_chunk, built.algo.env_steps_per_update, **kw)
    for strategy, message in (("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
                              ("custom_combiners:missing", "module 'custom_combiners' has no function 'missing'"),
                              ("custom_combiners:not_a_function", "has no function 'not_a_function'")):
        bad = load(*TINY, "seeds=2", f"combine.strategy={strategy}", "combine.every_updates=8")
        with pytest.raises(ConfigError, match=message + ".*must be importable"):
            make(bad)
    with pytest.raises(ConfigError, match="a custom combiner needs a schedule"):
        make(load(*TINY, "seeds=2"), custom_combiner=lambda state, stats: state)
    hook = make(config)
    state = pop.init(population.stream_keys(0, 2, population.INIT_STREAM),
                     pop.members.place(population.broadcast_hparams(built.algo.default_hparams, 2)))
    report = population.ChunkReport(0, 8, 2048, 1.0, {"episode_return": np.ones(2)}, None)
    with pytest.raises(ValueError, match=r"combiner custom_combiners:drops_a_member changed state.* from float32\[2.* to float32\[1"):
        hook.apply(report, state, None)

    def to_float16(state, stats):
        return state._replace(params=jax.tree.map(lambda x: x.astype(np.float16), state.params))

    hook = make(load(*TINY, "seeds=2", "combine.every_updates=8"), custom_combiner=to_float16)
    with pytest.raises(ValueError, match="combiner to_float16 changed state.*from float32.*to float16"):
        hook.apply(report, state, None)


@pytest.mark.timeout(600)
def test_an_episode_schedule_resumes_exactly(tmp_path):
    """PBT every 50 episodes (the second chunk on early CartPole, not aligned with
    chunks): the count since the last exploit is checkpointed, so a run resumed from its first
    checkpoint exploits at the same chunks and ends identically."""
    import shutil

    from jaxrl import config as config_lib
    from jaxrl.experiment.run_dir import read_metrics
    from jaxrl.experiment.train import train

    config = config_lib.load("configs/ppo_cartpole.yaml", TINY + [
        "seeds=4", "pbt.every_episodes=50", "pbt.fraction=0.25", "pbt.hyperparameters=[lr]"])
    train(config, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    counts = [float(r["pbt_episodes"]) for r in rows if r["seed"] == "0"]
    assert counts[0] < 50 <= counts[1]  # the first exploit comes after the second chunk, not the first
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "run", resumed)
    steps = sorted(int(p.name) for p in (resumed / "checkpoints").iterdir() if p.name.isdigit())
    for step in steps[1:]:
        shutil.rmtree(resumed / "checkpoints" / str(step))
    (resumed / "summary.json").unlink()
    train(config, resumed, progress=False, resume=True)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "sps"} for r in rs]  # noqa: E731
    assert strip(read_metrics(resumed / "metrics.csv")) == strip(rows)
