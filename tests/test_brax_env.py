"""brax/<name> envs: registration without importing brax, spaces, time limit vs termination,
fresh auto-resets, action repeat, readable config errors, and jit + vmap through make_vec.

Real brax, inverted_pendulum on the positional backend (the cheapest to compile); compiled
functions are shared through module fixtures, and the time limit lives in the (traced) params,
so one compiled step serves every episode length.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from conftest import run_python  # noqa: E402
from jaxrl import envs  # noqa: E402
from jaxrl.envs import brax_env  # noqa: E402
from jaxrl.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ZERO, PUSH = jnp.array([0.0]), jnp.array([1.0])  # PUSH tips the pendulum over in 7 brax steps


@pytest.fixture(scope="module")
def pendulum():
    return envs.make("brax/inverted_pendulum")


@pytest.fixture(scope="module")
def brax_step(pendulum):
    return jax.jit(pendulum[0].brax_env.step)


def run(env, params, state, action, steps, seed=0):
    """`steps` steps of one action: every transition `(obs, state, reward, terminated,
    truncated, info)` and every step's `(terminated, truncated)`."""
    transitions = []
    for i in range(steps):
        transitions.append(env.step(jax.random.PRNGKey(1000 * seed + i), state, action, params))
        state = transitions[-1][1]
    return transitions, [(bool(t[3]), bool(t[4])) for t in transitions]


def test_ids_are_registered_without_importing_brax():
    assert {f"brax/{name}" for name in brax_env.BRAX_ENVS} <= set(envs.registered_ids())
    code = "import sys, jaxrl.envs; print('brax' in sys.modules)"
    result = run_python(code, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_make_gives_brax_spaces(pendulum):
    env, params = pendulum
    assert env.name == "brax/inverted_pendulum" and env.brax_env.backend == "positional"
    assert params.max_steps_in_episode == 1000
    act, obs = env.action_space(params), env.observation_space(params)
    assert act.shape == (env.brax_env.action_size,) == (1,)
    assert float(act.low) == -1.0 and float(act.high) == 1.0
    assert obs.shape == (env.brax_env.observation_size,) == (4,)


def test_time_limit_truncates_and_resets(pendulum, brax_step):
    env, params = pendulum
    obs0, state = env.reset(jax.random.PRNGKey(0), params)
    brax_state = state.inner
    for _ in range(5):
        brax_state = brax_step(brax_state, ZERO)
    transitions, flags = run(env, params.replace(max_steps_in_episode=5), state, ZERO, 5)
    obs, state, reward, terminated, truncated, info = transitions[-1]
    assert flags == [(False, False)] * 4 + [(False, True)]
    assert reward.dtype == jnp.float32 and terminated.dtype == truncated.dtype == jnp.bool_
    np.testing.assert_allclose(info["final_observation"], brax_state.obs, atol=1e-5)
    assert int(state.time) == 0 and not np.allclose(obs, info["final_observation"])
    np.testing.assert_array_equal(obs, state.inner.obs)


def test_auto_reset_draws_fresh_states(pendulum):
    env, params = pendulum
    params = params.replace(max_steps_in_episode=2)
    first, state = env.reset(jax.random.PRNGKey(0), params)
    transitions, _ = run(env, params, state, ZERO, 2, seed=1)
    second, state = transitions[-1][:2]
    third = run(env, params, state, ZERO, 2, seed=2)[0][-1][0]
    for a, b in [(first, second), (first, third), (second, third)]:
        assert not np.allclose(a, b)
    assert np.abs(np.asarray([first, second, third])).max() <= 0.01  # all reset noise


def test_termination_is_not_truncation(pendulum, brax_step):
    env, params = pendulum
    _, state = env.reset(jax.random.PRNGKey(0), params)
    clipped = env.step(jax.random.PRNGKey(0), state, jnp.array([50.0]), params)[0]
    np.testing.assert_array_equal(clipped, env.step(jax.random.PRNGKey(0), state, PUSH, params)[0])
    transitions, flags = run(env, params, state, PUSH, 20)
    falls_at = [terminated for terminated, _ in flags].index(True) + 1
    assert flags[:falls_at] == [(False, False)] * (falls_at - 1) + [(True, False)]
    assert abs(float(transitions[falls_at - 1][5]["final_observation"][1])) > 0.2  # pole angle
    # falling on the very step the time limit is reached is a termination only
    _, flags = run(env, params.replace(max_steps_in_episode=falls_at), state, PUSH, falls_at)
    assert flags[-1] == (True, False)


def test_action_repeat_sums_rewards_and_counts_agent_steps(brax_step):
    env, params = envs.make("brax/inverted_pendulum", action_repeat=2, episode_length=3)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    # one agent step = two brax steps with the same action
    once = brax_step(state.inner, ZERO)
    twice = brax_step(once, ZERO)
    obs, next_state, reward, *_ = env.step(jax.random.PRNGKey(0), state, ZERO, params)
    np.testing.assert_allclose(obs, twice.obs, atol=1e-5)
    assert float(reward) == pytest.approx(float(once.reward) + float(twice.reward)) == 2.0
    assert run(env, params, next_state, ZERO, 2)[1] == [(False, False), (False, True)]
    # the pendulum falls on the first sub-step of agent step 4: the second one is masked out
    brax_state = state.inner
    for _ in range(6):
        brax_state = brax_step(brax_state, PUSH)
    fell = brax_step(brax_state, PUSH)
    assert float(brax_state.done) == 0.0 and float(fell.done) == 1.0
    transitions, flags = run(env, params.replace(max_steps_in_episode=100), state, PUSH, 4)
    _, _, reward, _, _, info = transitions[-1]
    assert flags == [(False, False)] * 3 + [(True, False)] and float(reward) == 1.0
    np.testing.assert_allclose(info["final_observation"], fell.obs, atol=1e-5)


def test_config_errors_are_readable(monkeypatch):
    with pytest.raises(ConfigError, match="valid backends: generalized, positional, spring, mjx"):
        envs.make("brax/ant", backend="warp")
    with pytest.raises(ConfigError, match="valid backends: generalized$"):
        envs.make("brax/swimmer", backend="positional")
    with pytest.raises(ConfigError, match="unknown keys 'ctrl_cost', 'nframes' for brax/ant.*ctrl_cost_weight"):
        envs.make("brax/ant", ctrl_cost=0.1, nframes=3)
    with pytest.raises(ConfigError, match="episode_length must be a positive integer"):
        envs.make("brax/ant", episode_length=0)
    with pytest.raises(ConfigError, match="brax/hopper .* fails to build or trace a step: TypeError"):
        envs.make("brax/hopper", healthy_z_range=5)  # brax unpacks it (min_z, max_z) in step
    with pytest.raises(envs.UnknownEnvError, match="brax/ant"):
        envs.make("brax/antt")
    monkeypatch.setitem(sys.modules, "brax", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match='pip install "jaxrl\\[brax\\]"'):
        envs.make("brax/hopper")


def test_make_vec_jits_reset_and_step():
    vec, params = envs.make_vec("brax/inverted_pendulum", 2, env_kwargs={"episode_length": 3})
    reset, step = jax.jit(vec.reset), jax.jit(vec.step)
    obs, state = reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (2, 4) and not np.allclose(obs[0], obs[1])
    for i in range(3):
        obs, state, reward, terminated, truncated, info = step(
            jax.random.PRNGKey(i), state, jnp.zeros((2, 1)), params)
    assert obs.shape == info["final_observation"].shape == (2, 4) and reward.shape == (2,)
    assert truncated.tolist() == [True, True] and terminated.tolist() == [False, False]
    assert info["episode_return"].tolist() == [3.0, 3.0]


def test_ppo_trains_on_brax_end_to_end_from_the_cli(tmp_path):
    """`jaxrl train` with the shipped ant config on inverted_pendulum, a few PPO updates of 2
    seeds in a real subprocess: finite losses, returns logged, greedy evaluation written."""
    from test_cli import jaxrl
    from jaxrl.experiment.run_dir import read_metrics

    run_dir = tmp_path / "brax"
    done = jaxrl("train", "configs/ppo_brax_ant.yaml", "--seeds", "2", "--run-dir", str(run_dir),
                 "--no-progress", "env.id=brax/inverted_pendulum", "env.num_envs=4",
                 "env.kwargs.backend=positional", "algo.num_steps=16", "algo.num_minibatches=2",
                 "total_env_steps=256", "log_every_env_steps=128", "eval.episodes=2",
                 "eval.every_env_steps=0", "eval.max_steps=50")
    assert done.returncode == 0, done.stderr
    rows = read_metrics(run_dir / "metrics.csv")
    assert {int(r["env_steps"]) for r in rows} == {128, 256} and len(rows) == 4
    for row in rows:
        for key in ("policy_loss", "value_loss", "entropy"):
            assert np.isfinite(float(row[key])), (key, row)
    assert any(r["episode_return"] for r in rows)  # the pendulum fell within 64 steps somewhere
    final = json.loads((run_dir / "summary.json").read_text())["final_eval"]
    assert len(final["per_seed"]) == 2 and 1 <= final["min"] <= 50
    bad = jaxrl("train", "configs/ppo_brax_ant.yaml", "--run-dir", str(tmp_path / "never"),
                "env.kwargs.backend=warp", timeout=200)
    assert bad.returncode == 2 and "valid backends: generalized, positional, spring, mjx" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "never").exists()
