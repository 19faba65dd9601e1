"""The host loop's bookkeeping: every env step lands in the right [member, t, env] slot of the
`Steps` that `learn` gets, whatever the env groups, device turns and learning order."""

import json

import numpy as np
import pytest

from conftest import run_python

pytest.importorskip("gymnasium")
pytestmark = pytest.mark.timeout(600)

MEMBERS, ENVS, STEPS, UPDATES = 4, 4, 12, 2

# Two real updates of a population on the transparent Counting env (tests/host_test_envs.py),
# in a fresh process with two CPU devices; prints the Steps each update learned from.
CODE = """
import json, sys
import jax, numpy as np
sys.path.insert(0, "tests")
from jaxrl import config as config_lib, population
from jaxrl.experiment.assemble import build, make_population

overrides = ["env.id=host_test_envs:Counting-v0", "env.backend=gymnasium", "env.num_workers=1",
             "env.num_envs={envs}", "seeds={members}", "total_env_steps=100000", *{overrides}]
config = config_lib.load("{config}", overrides)
built = build(config)
pop = make_population(config, built)
try:
    hparams = pop.members.place(population.broadcast_hparams(built.algo.default_hparams, {members}))
    state = pop.init(population.stream_keys(0, {members}, population.INIT_STREAM), hparams)
    pop.compile(state, hparams)
    out = []
    for update in range({updates}):
        state, metrics = pop.train_chunk(state, hparams, 1)
        steps = [shard.buffers[update % 2].steps for shard in pop.shards]
        steps = jax.tree.map(lambda *x: np.concatenate(x), *steps)
        action = steps.record.action if hasattr(steps.record, "action") else steps.record
        out.append({{name: np.asarray(getattr(steps, name)).tolist() for name in
                    ("obs", "reward", "terminated", "truncated", "final_obs", "episode_done",
                     "episode_return")}} | {{"action": np.asarray(action).tolist(), "shards": len(pop.shards),
                                            "groups": pop.groups}})
    print("RESULT" + json.dumps(out))
finally:
    pop.close()
"""

PPO = ("configs/ppo_cartpole.yaml", [f"algo.num_steps={STEPS}", "algo.num_minibatches=2"])
DQN = ("configs/dqn_lunarlander.yaml", [f"algo.rollout_steps={STEPS}", "algo.replay_ratio=0.0625",
                                        "algo.buffer_size=1024", "algo.learning_starts=96", "algo.batch_size=16"])


def run_updates(config: tuple[str, list[str]], *overrides: str) -> list[dict]:
    path, base = config
    code = CODE.format(config=path, envs=ENVS, members=MEMBERS, updates=UPDATES,
                       overrides=repr([*base, *overrides]))
    done = run_python(code, devices=2, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return [{k: np.asarray(v) for k, v in update.items()} for update in json.loads(line[len("RESULT"):])]


def check_alignment(updates: list[dict]) -> None:
    """Each step's reward, flags, final observation and next observation follow from the
    observation it acted on and its recorded action, as the Counting env defines them."""
    carried, running = None, 0.0
    for steps in updates:
        obs, action = steps["obs"], steps["action"]  # [M, T, E, 3], [M, T, E]
        ident, t = obs[..., 0], obs[..., 1]
        length = 3 + ident.astype(int) % 5
        np.testing.assert_array_equal(steps["reward"], 10 * (t + 1) + action)
        np.testing.assert_array_equal(steps["terminated"], t + 1 >= length)
        assert not steps["truncated"].any()
        np.testing.assert_array_equal(steps["final_obs"][..., 1], t + 1)
        np.testing.assert_array_equal(steps["final_obs"][..., 0], ident)
        done = steps["episode_done"]
        np.testing.assert_array_equal(done, steps["terminated"])
        assert done.any() and (~done).any()
        # the next observation continues the episode, or starts a fresh one at t = 0
        after = np.where(done[..., None], 0, steps["final_obs"])[..., 1]
        np.testing.assert_array_equal(after[:, :-1], t[:, 1:])
        if carried is not None:  # the next update goes on from where the last one stopped
            np.testing.assert_array_equal(carried, t[:, 0])
        carried = after[:, -1]
        for step in range(t.shape[1]):  # an episode's return: its rewards since its t = 0
            running = np.where(t[:, step] == 0, 0.0, running) + steps["reward"][:, step]
            ended = done[:, step]
            np.testing.assert_allclose(steps["episode_return"][:, step][ended], running[ended])


@pytest.fixture(scope="module")
def lockstep() -> list[dict]:
    """The default layout: one program for all members, every env stepping in lockstep."""
    return run_updates(PPO)


def test_every_step_lands_where_learn_reads_it(lockstep):
    """Observations never depend on actions, so every layout must see the very same
    observation sequences, and each step's outcome must match its observation and action."""
    check_alignment(lockstep)
    assert (lockstep[0]["shards"], lockstep[0]["groups"]) == (1, 1)
    turns = run_updates(PPO, "env.host_groups=2", "env.device_turns=true")
    check_alignment(turns)
    assert (turns[0]["shards"], turns[0]["groups"]) == (2, 2)
    for mine, theirs in zip(turns, lockstep):
        np.testing.assert_array_equal(mine["obs"], theirs["obs"])


def test_dqn_learning_while_stepping_keeps_every_step_in_place(lockstep):
    """Env seeds follow (seed, member, env) only, so DQN's envs start like PPO's."""
    updates = run_updates(DQN, "env.host_groups=2", "env.learn_while_stepping=true")
    check_alignment(updates)
    for mine, theirs in zip(updates, lockstep):
        np.testing.assert_array_equal(mine["obs"], theirs["obs"])


class RunningMoments:
    """Plain numpy running mean and variance of batches (Chan's parallel update), started as
    gymnasium's normalisation wrappers start: mean 0, variance 1, count 1e-4."""

    def __init__(self, shape: tuple[int, ...]):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def add(self, batch: np.ndarray) -> None:
        n, batch_mean, batch_var = len(batch), batch.mean(0), batch.var(0)
        delta, total = batch_mean - self.mean, self.count + len(batch)
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def scale(self, x: np.ndarray, centre: bool = True) -> np.ndarray:
        return np.clip((x - self.mean * centre) / np.sqrt(self.var + 1e-8), -10, 10)


def test_host_normalisation_follows_the_running_statistics_of_the_raw_stream(lockstep):
    """env.normalize_obs / normalize_reward on host envs: every stored observation, final
    observation and reward is the raw one (the lockstep run's, same seeds) normalised with
    per-member running statistics updated at each step, as gymnasium's wrappers define them;
    episode returns stay raw."""
    gamma = 0.9
    updates = run_updates(PPO, "env.normalize_obs=true", "env.normalize_reward=true", f"algo.gamma={gamma}",
                          "env.device_turns=true")
    raw = np.concatenate([u["obs"] for u in lockstep], axis=1)  # [M, 2T, E, 3]: obs never depend on actions
    seen = {name: np.concatenate([u[name] for u in updates], axis=1)
            for name in ("obs", "final_obs", "reward", "action", "terminated", "episode_return")}
    np.testing.assert_array_equal(seen["terminated"], np.concatenate([u["terminated"] for u in lockstep], 1))
    for m in range(MEMBERS):
        obs_stats, reward_stats, discounted = RunningMoments((3,)), RunningMoments(()), np.zeros(ENVS)
        obs_stats.add(raw[m, 0])  # the first resets
        for t in range(raw.shape[1]):
            np.testing.assert_allclose(seen["obs"][m, t], obs_stats.scale(raw[m, t]), rtol=1e-4, atol=1e-4)
            reward = 10 * (raw[m, t, :, 1] + 1) + seen["action"][m, t]
            discounted = discounted * gamma + reward
            reward_stats.add(discounted)
            np.testing.assert_allclose(seen["reward"][m, t], reward_stats.scale(reward, centre=False), rtol=1e-4)
            discounted = np.where(seen["terminated"][m, t], 0.0, discounted)
            if t + 1 < raw.shape[1]:  # the next observations are known: the final ones are normalised after them
                obs_stats.add(raw[m, t + 1])
                reached = raw[m, t] + [0, 1, 0]  # the Counting env's step reaches [id, t + 1, 0]
                np.testing.assert_allclose(seen["final_obs"][m, t], obs_stats.scale(reached), rtol=1e-4, atol=1e-4)
        done = seen["terminated"][m]
        running = np.zeros(ENVS)
        for t in range(raw.shape[1]):  # returns are the raw rewards' sums
            running = np.where(raw[m, t, :, 1] == 0, 0.0, running) + 10 * (raw[m, t, :, 1] + 1) + seen["action"][m, t]
            np.testing.assert_allclose(seen["episode_return"][m, t][done[t]], running[done[t]])
