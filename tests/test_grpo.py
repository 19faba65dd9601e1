"""GRPO: group advantages against a numpy loop, grouped rollouts that share their start
state and randomness, bad configs, and that it learns CartPole-v1 from a fixed seed."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl.algos import grpo
from jaxrl.envs import make_vec
from jaxrl.errors import ConfigError
from jaxrl.experiment.train import build
from jaxrl.rl import group_advantages, group_normalize, reward_to_go
from jaxrl.rollout import rollout

pytestmark = pytest.mark.timeout(600)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def np_group_advantages(rewards, alive, gamma, per_step, eps=1e-8):
    """Plain loops over [T, B, G]: discounted returns, then (R - mean) / (std + eps) per group."""
    T, B, G = rewards.shape
    to_go = np.zeros((T, B, G))
    for b in range(B):
        for g in range(G):
            running = 0.0
            for t in reversed(range(T)):
                running = rewards[t, b, g] * alive[t, b, g] + gamma * running
                to_go[t, b, g] = running
    adv = np.zeros((T, B, G))
    for b in range(B):
        if not per_step:
            R = to_go[0, b]
            normalised = (R - R.mean()) / (R.std() + eps)
            for t in range(T):
                adv[t, b] = np.where(alive[t, b], normalised, 0.0)
            continue
        for t in range(T):
            members = [g for g in range(G) if alive[t, b, g]]
            if not members:
                continue
            values = to_go[t, b, members]
            mean, std = values.mean(), values.std()
            for g in members:
                adv[t, b, g] = (to_go[t, b, g] - mean) / (std + eps)
    return to_go, adv


def random_episodes(rng, T, B, G):
    lengths = rng.integers(1, T + 1, size=(B, G))
    alive = np.arange(T)[:, None, None] < lengths[None]
    rewards = rng.normal(size=(T, B, G)) + 1.0
    return rewards.astype(np.float32), alive


@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_group_advantages_match_a_numpy_loop(per_step, gamma):
    rewards, alive = random_episodes(np.random.default_rng(3), 9, 3, 5)
    to_go, expected = np_group_advantages(rewards, alive, gamma, per_step)
    np.testing.assert_allclose(reward_to_go(jnp.asarray(rewards), jnp.asarray(alive), gamma),
                               to_go, rtol=1e-5, atol=1e-5)
    got = group_advantages(jnp.asarray(rewards), jnp.asarray(alive), gamma, per_step)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Every group's advantages are centred over its members (at each step, per-step mode).
    if not per_step:
        np.testing.assert_allclose(np.asarray(got)[0].sum(-1), 0.0, atol=1e-4)


def test_a_group_that_agrees_gets_zero_advantage():
    values = jnp.asarray([[3.0, 3.0, 3.0], [1.0, 2.0, 3.0]])
    out = np.asarray(group_normalize(values))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1], [-1.2247449, 0.0, 1.2247449], rtol=1e-5)


def test_group_members_share_start_state_and_env_randomness():
    """MovieRec-v1 draws clicks and churn at random: within a group, equal actions give equal
    trajectories (the env's keys are shared), other actions make a member diverge."""
    env, params = make_vec("MovieRec-v1", 6, group_size=3)
    obs, state = jax.jit(env.reset)(jax.random.PRNGKey(0), params)
    obs = np.asarray(obs)
    assert np.array_equal(obs[0], obs[1]) and np.array_equal(obs[0], obs[2])
    assert not np.array_equal(obs[0], obs[3])  # another group, another start state
    step = jax.jit(env.step)
    actions = jnp.asarray([0, 0, 5, 1, 1, 1])  # member 2 deviates; group 2 acts alike
    trajectories = []
    key = jax.random.PRNGKey(1)
    for _ in range(8):
        key, step_key = jax.random.split(key)
        obs, state, reward, *_ = step(step_key, state, actions, params)
        trajectories.append((np.asarray(obs), np.asarray(reward)))
    observations = np.stack([o for o, _ in trajectories])
    rewards = np.stack([r for _, r in trajectories])
    np.testing.assert_array_equal(observations[:, 0], observations[:, 1])
    np.testing.assert_array_equal(rewards[:, 0], rewards[:, 1])
    np.testing.assert_array_equal(observations[:, 3], observations[:, 4])
    np.testing.assert_array_equal(observations[:, 3], observations[:, 5])
    assert not np.array_equal(observations[:, 0], observations[:, 2])


def test_grpo_rollouts_start_together_and_diverge_through_sampled_actions():
    env, params = make_vec("CartPole-v1", 8, group_size=4)
    config = grpo.Config(group_size=4, horizon=40)
    algo = grpo.make(config, env, params, 8 * 40)
    state = algo.init(jax.random.PRNGKey(1), algo.default_hparams)
    run = jax.jit(lambda state: rollout(algo.policy, env, params, state, algo.default_hparams, 40,
                                        resets=True))
    _, out = run(state)
    obs = np.asarray(out.obs)  # [T, 8, 4]
    for group in (slice(0, 4), slice(4, 8)):
        assert np.all(obs[0, group] == obs[0, group][0])
    assert not np.array_equal(obs[0, 0], obs[0, 4])
    assert not np.array_equal(obs[10, 0], obs[10, 1])  # sampled actions told them apart
    alive, first = grpo.first_episode(out)
    alive = np.asarray(alive)
    assert alive[0].all()
    assert np.all(alive[1:] <= alive[:-1])  # once out of the first episode, never back in
    done = np.asarray(first.episode_done)
    assert np.all(done.sum(0) <= 1)


def test_bad_grpo_configs_are_refused():
    with pytest.raises(ConfigError, match="group_size must be at least 2"):
        config_lib.load(CONFIGS / "grpo_cartpole.yaml", ["algo.group_size=1"])
    with pytest.raises(ConfigError, match="ref_refresh_every"):
        config_lib.load(CONFIGS / "grpo_cartpole.yaml", ["algo.ref_refresh_every=0"])
    with pytest.raises(ConfigError, match="less than one update"):
        build(config_lib.load(CONFIGS / "grpo_cartpole.yaml", ["total_env_steps=1000"]))
    with pytest.raises(ConfigError, match="policy=beta needs a continuous"):
        build(config_lib.load(CONFIGS / "grpo_cartpole.yaml", ["algo.policy=beta"]))


def test_grpo_learns_cartpole_with_fixed_seed():
    """The shipped config cut to 2 seeds x 2.56e5 steps: far above a random policy (~22)."""
    config = config_lib.load(CONFIGS / "grpo_cartpole.yaml",
                             ["seeds=2", "total_env_steps=256000", "eval.every_env_steps=0"])
    built = build(config)
    result = population.run(built.algo, config.seeds, seed=0,
                            updates_per_chunk=built.updates_per_chunk, evaluator=built.evaluator)
    final = result.final_eval_returns.mean(axis=1)
    assert final.min() >= 150, final
    train = [r.metrics["episode_return"] for r in result.reports]
    assert np.nanmean(train[-1]) > 2 * np.nanmean(train[0]), train


def test_plot_grpo_groups_draws_each_group_size_from_real_cli_runs(tmp_path):
    """A G sweep of two real CLI runs; the chart's CSV holds each run's summary figures."""
    from test_cli import jaxrl
    from jaxrl.experiment.run_dir import read_metrics

    tiny = ["--seeds", "2", "--no-progress", "total_env_steps=24000", "log_every_env_steps=6000",
            "eval.episodes=2", "algo.horizon=100", "algo.num_minibatches=2"]
    runs = {}
    for g in (2, 4):
        runs[g] = tmp_path / f"g{g}"
        done = jaxrl("train", "configs/grpo_cartpole.yaml", "--run-dir", str(runs[g]), *tiny,
                     f"algo.group_size={g}")
        assert done.returncode == 0, done.stderr
    out = tmp_path / "sweep.png"
    done = jaxrl("plot", "--grpo-groups", str(runs[2]), str(runs[4]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = {int(r["group_size"]): r for r in read_metrics(out.with_name("sweep_final.csv"))}
    assert set(final) == {2, 4} and {r["env"] for r in final.values()} == {"CartPole-v1"}
    for g, folder in runs.items():
        expected = json.loads((folder / "summary.json").read_text())["final_eval"]
        for key in ("mean", "iqm", "iqm_ci_low", "iqm_ci_high", "min", "max"):
            assert float(final[g][key]) == pytest.approx(expected[key], rel=1e-5, abs=1e-4)
    curves = read_metrics(out.with_suffix(".csv"))
    assert {int(r["group_size"]) for r in curves} == {2, 4}
    assert {int(r["env_steps"]) for r in curves if r["group_size"] == "4"} == {4800, 9600, 14400, 19200, 24000}

    ppo_run = tmp_path / "ppo"
    (ppo_run).mkdir()
    (ppo_run / "config.yaml").write_text("algo:\n  name: ppo\nenv:\n  id: CartPole-v1\n")
    bad = jaxrl("plot", "--grpo-groups", str(runs[2]), str(ppo_run), "--out", str(out), timeout=120)
    assert bad.returncode == 2 and "is a ppo run" in bad.stderr and "Traceback" not in bad.stderr
    twice = jaxrl("plot", "--grpo-groups", str(runs[2]), str(runs[2]), "--out", str(out), timeout=120)
    assert twice.returncode == 2 and "one run per env and group size" in twice.stderr


@pytest.mark.parametrize("policy", ["gaussian", "beta"])
def test_grpo_trains_continuous_heads_inside_the_bounds(policy):
    """The Pendulum config with a Gaussian or Beta head: finite losses, the group advantages
    reach the loss (the policy moves), and greedy actions stay within [-2, 2]."""
    config = config_lib.load(CONFIGS / "grpo_pendulum.yaml", [
        "seeds=2", f"algo.policy={policy}", "env.num_envs=2", "algo.group_size=4",
        "algo.horizon=50", "algo.num_minibatches=2", "total_env_steps=1600",
        "log_every_env_steps=800", "eval.episodes=2", "eval.every_env_steps=0", "algo.kl_coef=0.1"])
    built = build(config)
    result = population.run(built.algo, 2, updates_per_chunk=built.updates_per_chunk,
                            evaluator=built.evaluator)
    metrics = result.reports[-1].metrics
    for name in ("policy_loss", "kl_to_reference", "entropy", "approx_kl"):
        assert np.all(np.isfinite(metrics[name])), name
    assert np.all(metrics["approx_kl"] > 0) and np.all(metrics["kl_to_reference"] >= 0)
    params = jax.tree.map(lambda x: x[0], result.state.params)
    obs = jax.random.normal(jax.random.PRNGKey(0), (64, 3)) * 3
    actions = np.asarray(built.algo.act(params, obs, jax.random.PRNGKey(1), True))
    assert actions.shape == (64, 1) and np.all(np.abs(actions) <= 2.0)


def test_reference_policy_is_refreshed_every_m_updates():
    env, params = make_vec("CartPole-v1", 4, group_size=2)
    config = grpo.Config(group_size=2, horizon=20, num_minibatches=2, ref_refresh_every=2)
    algo = grpo.make(config, env, params, total_env_steps=10 * 80)
    update = jax.jit(algo.update)
    states = [algo.init(jax.random.PRNGKey(0), algo.default_hparams)]
    for _ in range(3):
        states.append(update(states[-1], algo.default_hparams)[0])
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert same(states[1].ref_params, states[0].params)  # refreshed at update 0
    assert same(states[2].ref_params, states[0].params)  # kept at update 1
    assert same(states[3].ref_params, states[2].params)  # refreshed at update 2
    assert not same(states[3].ref_params, states[0].params)
