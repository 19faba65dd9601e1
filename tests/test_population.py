"""The population driver: members independent of population size, hyperparameters as an
axis, chunk metrics reduced on device, and the same results sharded over several devices."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_python
from jaxrl import population
from jaxrl.algos import ppo
from jaxrl.envs import make_vec

pytestmark = pytest.mark.timeout(600)

TINY = ppo.Config(num_steps=16, num_minibatches=2)


def tiny_algo(total_env_steps=4 * 16 * 6):
    env, params = make_vec("CartPole-v1", 4)
    return ppo.make(TINY, env, params, total_env_steps)


def leaves(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_member_results_do_not_depend_on_population_size():
    algo = tiny_algo()
    small = population.run(algo, 2, seed=3, updates_per_chunk=3)
    large = population.run(algo, 3, seed=3, updates_per_chunk=3)
    for member in range(2):
        np.testing.assert_allclose(leaves(jax.tree.map(lambda x: x[member], small.state.params)),
                                   leaves(jax.tree.map(lambda x: x[member], large.state.params)),
                                   rtol=1e-5, atol=1e-6)
    # and different members really differ
    assert not np.allclose(leaves(jax.tree.map(lambda x: x[0], large.state.params)),
                           leaves(jax.tree.map(lambda x: x[1], large.state.params)))


def test_chunks_report_per_member_metrics_once_per_chunk():
    algo = tiny_algo()
    result = population.run(algo, 3, updates_per_chunk=4)  # 6 updates -> chunks of 4 and 2
    assert [r.updates_done for r in result.reports] == [4, 6]
    assert [r.env_steps for r in result.reports] == [4 * 64, 6 * 64]
    for report in result.reports:
        assert all(v.shape == (3,) for v in report.metrics.values())
    assert np.all(result.reports[-1].metrics["lr"] < TINY.lr)  # annealed
    assert int(np.asarray(result.state.update_step)[0]) == 6


def test_hyperparameters_are_a_vmapped_axis():
    algo = tiny_algo()
    hp = algo.default_hparams._replace(lr=jnp.array([1e-3, 1e-3, 0.0]))
    keys_same = population.run(algo, 3, hparams=hp, seed=0, updates_per_chunk=6)
    start = population.Population(algo, 3).init(population.stream_keys(0, 3, population.INIT_STREAM),
                                                population.broadcast_hparams(hp, 3))
    # lr = 0 leaves member 2's parameters where they started; the others move
    moved = [np.abs(leaves(jax.tree.map(lambda x: x[i], keys_same.state.params))
                    - leaves(jax.tree.map(lambda x: x[i], start.params))).max() for i in range(3)]
    assert moved[0] > 1e-4 and moved[1] > 1e-4 and moved[2] == 0.0


@pytest.mark.parametrize("count", [3, 5])
def test_a_wrong_number_of_hyperparameter_values_is_refused_before_compiling(count, monkeypatch):
    algo = tiny_algo()
    def compiled(*args, **kwargs):
        raise AssertionError("the population was built before the hyperparameters were checked")
    monkeypatch.setattr(population.Population, "init", compiled)
    monkeypatch.setattr(population.Population, "compile", compiled)
    hp = algo.default_hparams._replace(lr=jnp.full((count,), 1e-3))
    message = f"hparams.lr has {count} values for 4 members; give one value or one per member"
    with pytest.raises(ValueError, match=message):
        population.run(algo, 4, hparams=hp)


def test_broadcast_hparams_shares_one_value_and_keeps_one_per_member():
    hp = tiny_algo().default_hparams._replace(lr=[1e-3, 2e-3, 3e-3, 4e-3], gamma=jnp.asarray([0.9]))
    out = population.broadcast_hparams(hp, 4)
    np.testing.assert_allclose(np.asarray(out.lr), [1e-3, 2e-3, 3e-3, 4e-3])
    np.testing.assert_allclose(np.asarray(out.gamma), [0.9] * 4)
    assert all(leaf.shape == (4,) and leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(out))
    with pytest.raises(ValueError, match="hparams.clip_eps has 2 values for 4 members"):
        population.broadcast_hparams(hp._replace(clip_eps=[0.1, 0.2]), 4)


def test_a_run_restored_at_a_chunk_boundary_continues_exactly():
    """`Run` as a loop: stopped after its first chunk, its state restored into a fresh run,
    which trains the remaining chunks to the very parameters of an uninterrupted run."""
    algo = tiny_algo()  # 6 updates: chunks 0, 1, 2 of 2 updates
    whole = population.run(algo, 2, seed=1, updates_per_chunk=2)
    first = population.Run(population.Population(algo, 2), seed=1, updates_per_chunk=2)
    next(iter(first))
    saved = jax.tree.map(jnp.copy, first.driver.members.unpad(first.state))
    resumed = population.Run(population.Population(algo, 2), seed=1, updates_per_chunk=2)
    with pytest.raises(ValueError, match="chunk boundary; 3 updates"):
        resumed.restore(saved, 3)
    resumed.restore(saved, first.updates_done)
    assert [report.chunk for report in resumed] == [1, 2]
    np.testing.assert_array_equal(leaves(resumed.result().state.params), leaves(whole.state.params))


SHARDED = """
import json, jax, numpy as np
from jaxrl import population
from jaxrl.algos import ppo
from jaxrl.envs import make_vec
env, params = make_vec("CartPole-v1", 4)
algo = ppo.make(ppo.Config(num_steps=16, num_minibatches=2), env, params, 4 * 16 * 6)
result = population.run(algo, 4, seed=5, updates_per_chunk=3)
print(json.dumps({"devices": result.num_devices,
                  "mesh_for_3": population.population_mesh(3).size,
                  "shards": len(jax.tree.leaves(result.state.params)[0].sharding.device_set),
                  "params": np.concatenate([np.ravel(x) for x in jax.tree.leaves(result.state.params)]).tolist(),
                  "loss": result.reports[-1].metrics["value_loss"].tolist()}))
"""


def test_sharded_over_two_devices_matches_one_device():
    runs = {}
    for devices in (1, 2):
        done = run_python(SHARDED, devices=devices)
        assert done.returncode == 0, done.stderr
        runs[devices] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs[1]["devices"] == 1 and runs[2]["devices"] == 2 and runs[2]["shards"] == 2
    assert runs[2]["mesh_for_3"] == 2  # 3 members are padded to 4 over both devices
    np.testing.assert_allclose(runs[1]["params"], runs[2]["params"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runs[1]["loss"], runs[2]["loss"], rtol=1e-4, atol=1e-5)
