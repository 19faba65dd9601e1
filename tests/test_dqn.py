"""DQN and every Rainbow part learn: probe environments with known Q-values, CartPole-v1 from
a fixed seed (each part alone and all six together), MovieRec-v1 against a random
recommender; and bad input gives one clear error."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl.algos import dqn
from jaxrl.envs import make_vec
from jaxrl.errors import ConfigError
from jaxrl.experiment.train import build

pytestmark = pytest.mark.timeout(900)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GAMMA = 0.9
C51 = {"distributional": True, "v_min": -2.0, "v_max": 12.0}
VARIANTS = {
    "plain": {},
    "double": {"double": True},
    "dueling": {"dueling": True},
    "prioritized": {"prioritized": True},
    "n_steps3": {"n_steps": 3},
    "c51": C51,
    "noisy": {"noisy": True},
    "rainbow": {"rainbow": True, **C51},
}


def train_probe(env_id: str, parts: dict, seeds: int = 2):
    """A small DQN population on a probe; returns Q-values of every member at `obs`."""
    config = dqn.Config(lr=3e-3, gamma=GAMMA, buffer_size=2000, batch_size=64, learning_starts=256,
                        replay_ratio=0.5, target_update_every=64, eps_end=0.2,
                        eps_decay_fraction=0.3, network=dqn.NetworkConfig(hidden_sizes=(32,),
                                                                          activation="relu"),
                        **parts)
    env, params = make_vec(env_id, 8)
    algo = dqn.make(config, env, params, total_env_steps=8 * 1500)
    result = population.run(algo, seeds, updates_per_chunk=500)

    def q_values(obs_values):
        obs = jnp.asarray(obs_values, jnp.float32)[:, None]
        return np.asarray(jax.vmap(lambda p: algo.explain(p, obs)["q_values"])(result.state.params))

    return q_values


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_probe_q_values_follow_observation_and_action(variant):
    """One step, +1 when the action matches the observation's sign, else -1: Q is +-1."""
    q = train_probe("ProbeObsAndActionReward-v0", VARIANTS[variant])([-1.0, 1.0])  # [seed, obs, action]
    assert np.all(q[:, 0].argmax(-1) == 0) and np.all(q[:, 1].argmax(-1) == 1), q
    np.testing.assert_allclose(q[:, 0, 0], 1.0, atol=0.15)
    np.testing.assert_allclose(q[:, 1, 1], 1.0, atol=0.15)
    if not VARIANTS[variant].get("noisy") and not VARIANTS[variant].get("rainbow"):
        # epsilon-greedy keeps visiting the wrong action, so its value is learned too
        np.testing.assert_allclose(q[:, 0, 1], -1.0, atol=0.3)
        np.testing.assert_allclose(q[:, 1, 0], -1.0, atol=0.3)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_probe_truncation_is_bootstrapped(variant):
    """Reward 1 forever, time limit 5: bootstrapping at the cut gives Q = 1 / (1 - gamma) = 10,
    for 1-step and n-step targets alike; treating the cut as an end would give at most 4.1."""
    q = train_probe("ProbeTimeLimit-v0", VARIANTS[variant])([0.0])
    np.testing.assert_allclose(q.max(-1), 1.0 / (1.0 - GAMMA), rtol=0.1)


@pytest.mark.parametrize("variant", ["plain", "n_steps3", "c51"])
def test_probe_discounting_stops_at_termination(variant):
    """Two steps, reward 1 at the end: Q(first) = gamma, Q(last) = 1; nothing after the end."""
    q = train_probe("ProbeDiscounting-v0", VARIANTS[variant])([0.0, 1.0])
    np.testing.assert_allclose(q.max(-1), np.array([[GAMMA, 1.0]] * 2), atol=0.08)


def train_config(name: str, overrides: list[str], seed: int = 1) -> np.ndarray:
    config = config_lib.load(CONFIGS / name, overrides)
    built = build(config)
    result = population.run(built.algo, config.seeds, seed=seed,
                            updates_per_chunk=built.updates_per_chunk, evaluator=built.evaluator)
    return result.final_eval_returns.mean(axis=1)


CARTPOLE_PARTS = {
    "double": ["algo.double=true"],
    "dueling": ["algo.dueling=true"],
    "prioritized": ["algo.prioritized=true"],
    "n_steps3": ["algo.n_steps=3"],
    "c51": ["algo.distributional=true", "algo.v_min=0.0", "algo.v_max=100.0"],
    "noisy": ["algo.noisy=true"],
}


@pytest.mark.parametrize("part", list(CARTPOLE_PARTS))
def test_each_part_alone_learns_cartpole(part):
    """dqn_cartpole.yaml with one part switched on, 2 seeds x 1e5 steps: far above random (~22)."""
    final = train_config("dqn_cartpole.yaml", ["seeds=2", "total_env_steps=100000",
                                               "eval.episodes=5", *CARTPOLE_PARTS[part]])
    assert final.mean() >= 150, final


@pytest.mark.parametrize("name", ["dqn_cartpole.yaml", "rainbow_cartpole.yaml"])
def test_shipped_cartpole_configs_learn_with_fixed_seed(name):
    """The shipped configs cut to 1.5e5 steps (their schedules shrink with the budget): both
    seeds far above random. Full-length, 64-seed results are in the README."""
    final = train_config(name, ["seeds=2", "total_env_steps=150000", "eval.episodes=5"])
    assert final.min() >= 120 and final.mean() >= 200, final


def random_recommender_mean(sessions: int = 2000) -> float:
    """Mean session return of a uniformly random recommender, measured in the real env."""
    env, params = make_vec("MovieRec-v1", sessions)
    num_actions = env.action_space(params).n

    def returns(key):
        _, state = env.reset(key, params)

        def step(carry, key):
            state, total, alive = carry
            act_key, step_key = jax.random.split(key)
            action = jax.random.randint(act_key, (sessions,), 0, num_actions)
            _, state, reward, terminated, truncated, _ = env.step(step_key, state, action, params)
            done = jnp.logical_or(terminated, truncated)
            return (state, total + alive * reward, alive * (1.0 - done)), None

        start = (state, jnp.zeros(sessions), jnp.ones(sessions))
        (_, total, _), _ = jax.lax.scan(step, start, jax.random.split(key, 20))
        return total

    return float(jax.jit(returns)(jax.random.key(3)).mean())


def test_dqn_beats_a_random_recommender_on_movierec():
    """dqn_movierec.yaml cut to 1.5e5 steps: every seed's greedy return (100 sessions) is
    clearly above a random recommender's (about -5; trained agents reach about -1)."""
    trained = train_config("dqn_movierec.yaml", ["seeds=2", "total_env_steps=150000"])
    random_mean = random_recommender_mean()
    assert -6.0 < random_mean < -4.0, random_mean
    assert trained.min() >= random_mean + 2.0, (trained, random_mean)


@pytest.mark.parametrize("overrides, words", [
    (["env.id=Pendulum-v1"], "discrete"),
    (["algo.v_min=5.0", "algo.v_max=5.0"], "v_min"),
    (["algo.n_steps=0"], "n_steps"),
    (["algo.buffer_size=64", "algo.batch_size=128"], "buffer_size"),
    (["algo.per_alpha=1.5"], "per_alpha"),
    (["algo.replay_ratio=0.15"], "replay_ratio"),
    (["algo.loss=l1"], "algo.loss"),
    (["algo.optimizer=sgd"], "algo.optimizer"),
    (["algo.weight_decay=0.01"], "adamw"),
    (["algo.tau=0.0"], "algo.tau"),
])
def test_bad_dqn_config_gives_one_clear_error(overrides, words):
    with pytest.raises(ConfigError, match=words):
        config = config_lib.load(CONFIGS / "dqn_cartpole.yaml", overrides)
        build(config)


def test_rainbow_switches_on_all_six_parts():
    config = config_lib.load(CONFIGS / "dqn_cartpole.yaml", ["algo.rainbow=true"]).algo
    assert all(getattr(config, part) for part in dqn.RAINBOW_PARTS) and config.n_steps == 3
    kept = config_lib.load(CONFIGS / "dqn_cartpole.yaml", ["algo.rainbow=true", "algo.n_steps=5"]).algo
    assert kept.n_steps == 5
