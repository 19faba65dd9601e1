"""Training on host envs (gymnasium worker processes) with the algorithms' own functions."""

import jax
import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl.experiment.train import build, make_population, train

pytest.importorskip("gymnasium")
pytestmark = pytest.mark.timeout(300)


def host_config(path: str, *overrides: str):
    return config_lib.load(path, ["env.backend=gymnasium", "env.num_workers=1", *overrides])


def test_ppo_learns_gymnasium_cartpole_in_worker_processes(tmp_path):
    """Observation/action alignment, GAE over auto-resets and bootstrapping all have to be
    right for the return to climb from ~22 (random) this far in 40k steps."""
    config = host_config("configs/ppo_cartpole.yaml", "seeds=2", "total_env_steps=40960",
                         "log_every_env_steps=10240", "eval.episodes=4", "eval.every_env_steps=0")
    summary = train(config, tmp_path / "run", progress=False)
    assert summary["seeds"] == 2
    assert min(summary["final_eval"]["per_seed"]) > 150, summary["final_eval"]


def test_grpo_groups_start_from_identically_seeded_resets():
    """Every update resets the G copies of a group from one seed: equal first observations
    within a group, different ones across groups and members."""
    config = host_config("configs/grpo_cartpole.yaml", "seeds=2", "env.num_envs=2",
                         "algo.group_size=3", "algo.horizon=8", "total_env_steps=480")
    built = build(config)
    assert built.algo.spec.reset_groups == 3
    pop = make_population(config, built)
    try:
        hparams = pop.members.place(population.broadcast_hparams(built.algo.default_hparams, 2))
        state = pop.init(population.stream_keys(0, 2, population.INIT_STREAM), hparams)
        assert not any(shard.envs for shard in pop.shards)  # grouped runs reset at each update, not at init
        pop.compile(state, hparams)
        firsts = []
        for update in range(2):
            state, metrics = pop.train_chunk(state, hparams, 1)
            firsts.append(np.concatenate([shard.buffers[update % 2].steps.obs[:, 0] for shard in pop.shards]))
        for obs in firsts:  # [members, B * G, 4]
            groups = obs.reshape(2, 2, 3, 4)
            assert np.all(groups == groups[:, :, :1])
            assert not np.allclose(groups[:, 0, 0], groups[:, 1, 0])
            assert not np.allclose(groups[0, :, 0], groups[1, :, 0])
        assert not np.allclose(firsts[0], firsts[1])
        assert np.all(np.isfinite(np.asarray(metrics["policy_loss"])))
    finally:
        pop.close()


def test_dqn_closes_its_open_n_step_windows_after_resets_it_did_not_see():
    """A resumed host run restarts its envs: the last stored step must end its episode (as
    a truncation, bootstrapping from its own next observation), so no n-step return joins
    the step before the interruption to an episode after it."""
    config = host_config("configs/dqn_lunarlander.yaml", "algo.n_steps=3", "algo.buffer_size=512",
                         "algo.learning_starts=256", "algo.batch_size=32", "env.num_envs=2")
    algo = build(config).algo
    state = algo.init(jax.random.PRNGKey(0), algo.default_hparams)
    assert not np.asarray(state.recent.truncated).any()
    cut = algo.after_env_reset(state)
    truncated = np.asarray(cut.recent.truncated)
    assert truncated[-1].all() and not truncated[:-1].any()
    np.testing.assert_array_equal(np.asarray(cut.recent.obs), np.asarray(state.recent.obs))
