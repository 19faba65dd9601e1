"""PPO learns: probe environments with known values, and CartPole-v1 from a fixed seed."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl.algos import ppo
from jaxrl.envs import make_vec
from jaxrl.experiment.train import build

pytestmark = pytest.mark.timeout(600)

GAMMA = 0.9


def train_probe(env_id: str, seeds: int = 2):
    """Trains a small PPO population on a probe; returns (network, params of every member)."""
    config = ppo.Config(lr=1e-2, gamma=GAMMA, ent_coef=0.0, num_steps=16, num_minibatches=2,
                        anneal_lr=False)
    env, params = make_vec(env_id, 8)
    algo = ppo.make(config, env, params, total_env_steps=8 * 16 * 150)
    result = population.run(algo, seeds, updates_per_chunk=50)
    return ppo.build_network(config, env, params), result.state.params


def values_and_probs(network, params, obs_values):
    obs = jnp.asarray(obs_values, jnp.float32)[:, None]
    dist, value = jax.vmap(lambda p: network.apply(p, obs))(params)
    return np.asarray(value), np.asarray(jax.nn.softmax(dist.logits))


def test_probe_constant_reward_fits_value_one():
    network, params = train_probe("ProbeConstantReward-v0")
    values, _ = values_and_probs(network, params, [0.0])
    np.testing.assert_allclose(values, 1.0, atol=0.05)


def test_probe_value_depends_on_observation():
    network, params = train_probe("ProbeObsDependentReward-v0")
    values, _ = values_and_probs(network, params, [-1.0, 1.0])
    np.testing.assert_allclose(values, np.array([[-1.0, 1.0]] * 2), atol=0.1)


def test_probe_discounting():
    network, params = train_probe("ProbeDiscounting-v0")
    values, _ = values_and_probs(network, params, [0.0, 1.0])
    np.testing.assert_allclose(values, np.array([[GAMMA, 1.0]] * 2), atol=0.05)


def test_probe_policy_picks_rewarded_action():
    network, params = train_probe("ProbeActionDependentReward-v0")
    _, probs = values_and_probs(network, params, [0.0])
    assert np.all(probs[:, 0, 0] > 0.95), probs


def test_probe_policy_conditions_on_observation():
    network, params = train_probe("ProbeObsAndActionReward-v0")
    _, probs = values_and_probs(network, params, [-1.0, 1.0])
    assert np.all(probs[:, 0, 0] > 0.95) and np.all(probs[:, 1, 1] > 0.95), probs


def test_probe_truncation_is_bootstrapped_not_terminated():
    """Reward 1 forever, time limit 5: bootstrapping gives V = 1/(1-gamma) = 10.

    Treating the time limit as a termination would give at most 1 + 0.9 + ... + 0.9^4 = 4.1.
    """
    network, params = train_probe("ProbeTimeLimit-v0")
    values, _ = values_and_probs(network, params, [0.0])
    np.testing.assert_allclose(values, 1.0 / (1.0 - GAMMA), rtol=0.1)


def test_ppo_solves_cartpole_with_fixed_seed():
    """The shipped CartPole config, 4 seeds, 1.5e5 steps each: greedy evaluation near 500."""
    config = config_lib.load(config_lib.__file__.replace("jaxrl/config.py", "configs/ppo_cartpole.yaml"),
                             ["seeds=4", "total_env_steps=150000"])
    built = build(config)
    result = population.run(built.algo, config.seeds, seed=1, updates_per_chunk=built.updates_per_chunk,
                            evaluator=built.evaluator)
    final = result.final_eval_returns.mean(axis=1)
    assert final.shape == (4,)
    assert np.median(final) >= 475, final
    assert final.min() >= 300, final


def test_normalised_observations_and_rewards_train_and_evaluate():
    """With both normalisers on, training stays finite and evaluation reports raw returns."""
    config = config_lib.load(config_lib.__file__.replace("jaxrl/config.py", "configs/ppo_cartpole.yaml"),
                             ["seeds=2", "total_env_steps=40960", "env.normalize_obs=true",
                              "env.normalize_reward=true", "eval.episodes=4"])
    built = build(config)
    result = population.run(built.algo, 2, updates_per_chunk=built.updates_per_chunk,
                            evaluator=built.evaluator)
    last = result.reports[-1].metrics
    assert np.all(np.isfinite(last["value_loss"])) and np.all(np.isfinite(last["policy_loss"]))
    stats = result.state.env_state.stats  # NormalizeReward state
    assert np.all(np.asarray(stats.count) > 1000)
    returns = result.final_eval_returns
    # raw CartPole returns are whole numbers of steps, never scaled rewards
    assert np.all(returns >= 8) and np.allclose(returns, np.round(returns))
    assert np.mean(returns) > 100
