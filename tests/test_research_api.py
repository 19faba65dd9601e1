"""jaxrl as research code: algorithms through jit, traced flags, networks of one's own through
the whole stack (population, evaluation, orbax checkpoints), and the research example."""

import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import population
from jaxrl.algos import dqn, grpo, ppo
from jaxrl.envs import make_vec
from jaxrl.evaluation import make_evaluator
from jaxrl.experiment.checkpoints import Checkpointer
from jaxrl.networks import (
    ActorCritic, NetworkConfig, PolicyHead, QNetwork, QOutput, ValueHead, orthogonal, policy_spec,
)

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[1]


class Torso(nn.Module):
    """A user torso: one dense layer with a layer norm."""

    width: int = 32

    @nn.compact
    def __call__(self, obs):
        return jnp.tanh(nn.LayerNorm()(nn.Dense(self.width, kernel_init=orthogonal(1.0))(obs)))


class OwnActorCritic(nn.Module):
    """A whole network of one's own, built from the exported heads."""

    spec: object

    @nn.compact
    def __call__(self, obs):
        features = Torso()(obs)
        return PolicyHead(self.spec)(features), ValueHead()(features)


class OwnQ(nn.Module):
    """A Q-network of one's own (no noisy layers, one atom), with QNetwork's output type."""

    num_actions: int

    @nn.compact
    def __call__(self, obs):
        q = nn.Dense(self.num_actions)(Torso()(obs))
        return QOutput(q, q[..., None])


def cartpole(num_envs=4, group_size=1):
    return make_vec("CartPole-v1", num_envs, group_size=group_size)


def algorithms():
    env, params = cartpole()
    grouped, grouped_params = cartpole(4, group_size=2)
    yield "ppo", ppo.make(ppo.Config(num_steps=8, num_minibatches=2), env, params, 4 * 8 * 4)
    yield "grpo", grpo.make(grpo.Config(group_size=2, horizon=8, num_minibatches=2), grouped,
                            grouped_params, 4 * 8 * 4)
    yield "dqn", dqn.make(dqn.Config(buffer_size=64, batch_size=8, learning_starts=8,
                                     replay_ratio=0.25, noisy=True), env, params, 64)


@pytest.mark.parametrize("name", ["ppo", "grpo", "dqn"])
def test_an_algorithm_passes_through_jit_as_an_argument(name):
    algo = dict(algorithms())[name]
    state = algo.init(jax.random.PRNGKey(0), algo.default_hparams)
    through = jax.jit(lambda a, s: a.update(s, a.default_hparams))(algo, state)
    direct = jax.jit(algo.update)(state, algo.default_hparams)
    for a, b in zip(jax.tree.leaves(through), jax.tree.leaves(direct)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6)


@pytest.mark.parametrize("name", ["ppo", "grpo", "dqn"])
def test_deterministic_may_be_a_traced_bool(name):
    algo = dict(algorithms())[name]
    state = algo.init(jax.random.PRNGKey(1), algo.default_hparams)
    params, obs, key = algo.policy_params(state), state.obs, jax.random.PRNGKey(2)
    traced = jax.jit(algo.act)
    for flag in (True, False):
        np.testing.assert_array_equal(traced(params, obs, key, jnp.bool_(flag)),
                                      algo.act(params, obs, key, flag))


def test_a_network_of_ones_own_trains_evaluates_and_checkpoints(tmp_path):
    env, params = cartpole()
    eval_env, _ = make_vec("CartPole-v1", 2, update_stats=False)
    network = OwnActorCritic(policy_spec(env.action_space(params)))
    algo = ppo.make(ppo.Config(num_steps=16, num_minibatches=2), env, params, 4 * 16 * 4, network=network)
    evaluator = make_evaluator(algo, eval_env, params, max_steps=50)
    result = population.run(algo, 2, seed=0, updates_per_chunk=2, evaluator=evaluator)
    assert result.final_eval_returns.shape == (2, 2) and np.all(result.final_eval_returns > 0)
    assert "PolicyHead_0" in result.state.params["params"]  # the user's module, not ActorCritic
    saver = Checkpointer(tmp_path / "checkpoints")
    saver.save(4, result.state, {"updates_done": 4}, 0.0)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), result.state)
    restored = saver.restore_latest(abstract)
    saver.close()
    for a, b in zip(jax.tree.leaves(restored.state), jax.tree.leaves(result.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_user_encoder_replaces_the_configured_torso():
    env, params = cartpole()
    spec = policy_spec(env.action_space(params))
    net = ActorCritic(NetworkConfig(), spec, encoder=Torso())
    variables = net.init(jax.random.PRNGKey(0), jnp.zeros((3, 4)))
    assert "LayerNorm_0" in variables["params"]["encoder"]
    dist, value = net.apply(variables, jnp.zeros((3, 4)))
    assert dist.logits.shape == (3, 2) and value.shape == (3,)
    q = QNetwork(NetworkConfig(), 2, encoder=Torso(), dueling=True)
    out = q.apply(q.init(jax.random.PRNGKey(0), jnp.zeros((3, 4))), jnp.zeros((3, 4)))
    assert out.q_values.shape == (3, 2)


def test_dqn_trains_a_q_network_of_ones_own():
    env, params = cartpole()
    config = dqn.Config(buffer_size=256, batch_size=16, learning_starts=32, replay_ratio=0.25)
    algo = dqn.make(config, env, params, 256, network=OwnQ(2))
    result = population.run(algo, 2, seed=0, updates_per_chunk=16)
    assert np.all(np.isfinite(result.reports[-1].metrics["loss"]))


def test_the_research_example_learns_cartpole():
    """examples/custom_ppo.py: PPO-penalty with a residual torso, from public pieces only."""
    code = ("import sys; sys.path.insert(0, 'examples'); import custom_ppo; "
            "r = custom_ppo.main(seeds=4, steps=40_960); assert r.min() > 300, r")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=280, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "greedy return per seed" in proc.stdout
