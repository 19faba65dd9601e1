"""An independent single-file DQN in the style of PureJaxRL: the `reference` system of
`jaxrl bench peers` (run by `reference_worker.py`), so it never imports jaxrl.

Written from scratch (not copied) to follow the structure of PureJaxRL's `dqn.py`:
`make_train(config)` returns `train(rng)`, one `lax.scan` over iterations, each made of one
vectorised env step of every env, an add to the replay buffer, a gradient step under
`lax.cond` and a target-network copy under `lax.cond`; a population is
`jax.jit(jax.vmap(make_train(config)))(jax.random.split(rng, num_seeds))` on one device
(under `vmap` both branches of each `lax.cond` run and are selected, as in PureJaxRL).

Settings are PureJaxRL's CartPole defaults: a Dense 120 -> relu -> Dense 84 -> relu ->
Dense(num_actions) Q-network with flax's default initialisers, plain Adam at 2.5e-4 (no
clipping, no decay), 10 envs, 5e5 env steps, a 10,000-transition uniform replay buffer
sampled 128 at a time, epsilon-greedy acting per env with epsilon annealed linearly from
1.0 to 0.05 over the first 2.5e5 env steps, learning from env step 10,000 with one
gradient step every 10 env steps (one per iteration), a hard target copy every 500 env
steps, gamma 0.99 and an MSE loss on Q(s, a) against r + gamma (1 - done) max_a' Q_target(s', a')
on gymnax's CartPole-v1 (done = terminated | truncated, so truncation is not bootstrapped,
as in PureJaxRL). All step counters count env steps summed over the envs.

Deliberate differences:
- PureJaxRL uses flashbax's flat buffer (sample_sequence_length=2, period=1); here a small
  equivalent ring buffer of shape [BUFFER_SIZE // NUM_ENVS, NUM_ENVS, ...] stores
  (obs, action, reward, done) per env step and samples (time, env) pairs uniformly with
  replacement among those whose successor in the same env exists; the successor's obs is
  the next obs. No flashbax dependency.
- PureJaxRL returns four scalars per iteration (timesteps, updates, loss, mean return);
  here the scan returns three (the mean returned episode return over envs, and the sum and
  count of returns of episodes that ended this iteration), which can only make the
  reference faster.

`jaxrl bench peers --budget full --only dqn-cartpole` runs it beside jaxrl at 1e5 steps per seed.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax

# the same episode bookkeeping and greedy episodes as the PPO reference (a sibling file)
from reference_ppo import EpisodeLogger, LogState, greedy_evaluator

DEFAULT_CONFIG: dict[str, Any] = {
    "NUM_ENVS": 10,
    "BUFFER_SIZE": 10_000,
    "BUFFER_BATCH_SIZE": 128,
    "TOTAL_TIMESTEPS": 500_000,
    "EPSILON_START": 1.0,
    "EPSILON_FINISH": 0.05,
    "EPSILON_ANNEAL_TIME": 250_000,
    "TARGET_UPDATE_INTERVAL": 500,
    "LR": 2.5e-4,
    "LEARNING_STARTS": 10_000,
    "TRAINING_INTERVAL": 10,
    "GAMMA": 0.99,
    "TAU": 1.0,
    "ENV_NAME": "CartPole-v1",
}

# Fraction of the final iterations whose finished episodes make up `final_returns`.
FINAL_FRACTION = 0.05


class QNetwork(nn.Module):
    """Dense 120 -> relu -> Dense 84 -> relu -> Dense(action_dim), flax default init."""

    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = nn.relu(nn.Dense(120)(obs))
        x = nn.relu(nn.Dense(84)(x))
        return nn.Dense(self.action_dim)(x)


class Buffer(NamedTuple):
    """Ring buffer over time of per-env transitions: leaves are [capacity, num_envs, ...]."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array
    pos: jax.Array   # next time row to write
    size: jax.Array  # filled time rows (<= capacity)


def buffer_init(capacity: int, num_envs: int, obs_shape: Sequence[int], obs_dtype: Any) -> Buffer:
    """An empty buffer holding `capacity` time rows of `num_envs` envs."""
    return Buffer(
        obs=jnp.zeros((capacity, num_envs, *obs_shape), obs_dtype),
        action=jnp.zeros((capacity, num_envs), jnp.int32),
        reward=jnp.zeros((capacity, num_envs), jnp.float32),
        done=jnp.zeros((capacity, num_envs), jnp.bool_),
        pos=jnp.int32(0),
        size=jnp.int32(0),
    )


def buffer_add(buf: Buffer, obs: jax.Array, action: jax.Array, reward: jax.Array, done: jax.Array) -> Buffer:
    """Writes one time row (every env's step) at `pos`, overwriting the oldest row once full."""
    capacity = buf.obs.shape[0]
    return Buffer(
        obs=buf.obs.at[buf.pos].set(obs.astype(buf.obs.dtype)),
        action=buf.action.at[buf.pos].set(action.astype(jnp.int32)),
        reward=buf.reward.at[buf.pos].set(reward.astype(jnp.float32)),
        done=buf.done.at[buf.pos].set(done),
        pos=(buf.pos + 1) % capacity,
        size=jnp.minimum(buf.size + 1, capacity),
    )


def buffer_can_sample(buf: Buffer, batch_size: int) -> jax.Array:
    """True once enough time rows are stored (like flashbax's min_length // add_batch_size, at least 2)."""
    num_envs = buf.obs.shape[1]
    return buf.size >= max(2, batch_size // num_envs)


def buffer_sample(buf: Buffer, key: jax.Array, batch_size: int) -> tuple[jax.Array, ...]:
    """Uniform (time, env) pairs with replacement among rows whose successor row is stored.

    Returns (obs, action, reward, done, next_obs), each with leading axis `batch_size`.
    """
    capacity, num_envs = buf.obs.shape[:2]
    t_key, e_key = jax.random.split(key)
    oldest = (buf.pos - buf.size) % capacity
    offset = jax.random.randint(t_key, (batch_size,), 0, jnp.maximum(buf.size - 1, 1))
    t = (oldest + offset) % capacity
    t_next = (t + 1) % capacity
    e = jax.random.randint(e_key, (batch_size,), 0, num_envs)
    return buf.obs[t, e], buf.action[t, e], buf.reward[t, e], buf.done[t, e], buf.obs[t_next, e]


class Runner(NamedTuple):
    """Scan carry of one DQN run."""

    params: Any
    target_params: Any
    opt_state: Any
    buffer: Buffer
    env_state: LogState
    last_obs: jax.Array
    timesteps: jax.Array
    n_updates: jax.Array
    rng: jax.Array


def td_loss(network: nn.Module, params: Any, target_params: Any, batch: tuple[jax.Array, ...],
            gamma: float) -> jax.Array:
    """Mean squared error of Q(s, a) against r + gamma (1 - done) max_a' Q_target(s', a')."""
    b_obs, b_action, b_reward, b_done, b_next_obs = batch
    q_next = network.apply(target_params, b_next_obs).max(axis=-1)
    target = jax.lax.stop_gradient(b_reward + gamma * (1.0 - b_done.astype(jnp.float32)) * q_next)
    q = network.apply(params, b_obs)
    q_taken = jnp.take_along_axis(q, b_action[:, None], axis=-1)[:, 0]
    return jnp.mean(jnp.square(q_taken - target))


def epsilon_greedy(q: jax.Array, act_key: jax.Array, explore_key: jax.Array, epsilon: jax.Array) -> jax.Array:
    """Per env, the action of the largest Q-value, or with probability `epsilon` a uniform one."""
    greedy = jnp.argmax(q, axis=-1)
    random_action = jax.random.randint(act_key, greedy.shape, 0, q.shape[-1])
    explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
    return jnp.where(explore, random_action, greedy)


def make_train(config: dict[str, Any]) -> Callable[[jax.Array], dict[str, Any]]:
    """Returns `train(rng)`: a whole DQN run of one agent as one `lax.scan` over iterations."""
    config = {**DEFAULT_CONFIG, **config}
    num_envs = config["NUM_ENVS"]
    num_iterations = config["TOTAL_TIMESTEPS"] // num_envs
    batch_size = config["BUFFER_BATCH_SIZE"]
    capacity = config["BUFFER_SIZE"] // num_envs
    env, env_params = gymnax.make(config["ENV_NAME"])
    env = EpisodeLogger(env)
    num_actions = env.env.action_space(env_params).n
    obs_space = env.env.observation_space(env_params)
    obs_shape, obs_dtype = obs_space.shape, obs_space.dtype

    def epsilon(timesteps: jax.Array) -> jax.Array:
        """Linear from EPSILON_START to EPSILON_FINISH over EPSILON_ANNEAL_TIME env steps, then flat."""
        frac = jnp.clip(timesteps / config["EPSILON_ANNEAL_TIME"], 0.0, 1.0)
        return config["EPSILON_START"] + frac * (config["EPSILON_FINISH"] - config["EPSILON_START"])

    def train(rng: jax.Array) -> dict[str, Any]:
        network = QNetwork(num_actions)
        rng, init_rng = jax.random.split(rng)
        params = network.init(init_rng, jnp.zeros(obs_shape, jnp.float32))
        tx = optax.adam(learning_rate=config["LR"])
        opt_state = tx.init(params)

        rng, reset_rng = jax.random.split(rng)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_rng, num_envs), env_params)
        buffer = buffer_init(capacity, num_envs, obs_shape, obs_dtype)

        def learn(params, target_params, opt_state, buffer, key):
            batch = buffer_sample(buffer, key, batch_size)
            loss, grads = jax.value_and_grad(td_loss, argnums=1)(network, params, target_params, batch, config["GAMMA"])
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        def iteration(runner: Runner, _):
            rng, act_rng, explore_rng, step_rng, sample_rng = jax.random.split(runner.rng, 5)

            q = network.apply(runner.params, runner.last_obs)
            action = epsilon_greedy(q, act_rng, explore_rng, epsilon(runner.timesteps))

            obs, env_state, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_rng, num_envs), runner.env_state, action, env_params)
            timesteps = runner.timesteps + num_envs
            buffer = buffer_add(runner.buffer, runner.last_obs, action, reward, done)

            is_learn_time = (buffer_can_sample(buffer, batch_size)
                             & (timesteps > config["LEARNING_STARTS"])
                             & (timesteps % config["TRAINING_INTERVAL"] == 0))
            params, opt_state, _ = jax.lax.cond(
                is_learn_time,
                lambda: learn(runner.params, runner.target_params, runner.opt_state, buffer, sample_rng),
                lambda: (runner.params, runner.opt_state, jnp.float32(0.0)),
            )
            n_updates = runner.n_updates + is_learn_time.astype(jnp.int32)

            target_params = jax.lax.cond(
                timesteps % config["TARGET_UPDATE_INTERVAL"] == 0,
                lambda: optax.incremental_update(params, runner.target_params, config["TAU"]),
                lambda: runner.target_params,
            )

            ended = info["returned_episode"]
            metrics = (
                info["returned_episode_returns"].mean(),
                jnp.sum(jnp.where(ended, info["returned_episode_returns"], 0.0)),
                jnp.sum(ended.astype(jnp.int32)),
            )
            runner = Runner(params, target_params, opt_state, buffer, env_state, obs, timesteps, n_updates, rng)
            return runner, metrics

        rng, loop_rng = jax.random.split(rng)
        runner = Runner(params, params, opt_state, buffer, env_state, obs,
                        jnp.int32(0), jnp.int32(0), loop_rng)
        runner, (mean_return, ended_sum, ended_count) = jax.lax.scan(iteration, runner, None, num_iterations)
        return {"runner_state": runner, "metrics": {"returned_episode_returns": mean_return,
                                                    "ended_return_sum": ended_sum, "ended_count": ended_count}}

    return train


def make_greedy_eval(config: dict[str, Any], episodes: int) -> Callable[[Any, jax.Array], jax.Array]:
    """`evaluate(params, key)`: returns of `episodes` episodes taking the largest Q-value."""
    return greedy_evaluator({**DEFAULT_CONFIG, **config}, QNetwork, episodes)


def trained_params(out: dict[str, Any]) -> Any:
    """The online network's parameters at the end of training (of every seed, under `vmap`)."""
    return out["runner_state"].params


def env_steps_per_seed(config: dict[str, Any]) -> int:
    """Env steps one seed actually takes (whole iterations of NUM_ENVS steps only, as `make_train` runs)."""
    config = {**DEFAULT_CONFIG, **config}
    return (config["TOTAL_TIMESTEPS"] // config["NUM_ENVS"]) * config["NUM_ENVS"]


def final_returns(out: dict[str, Any]) -> np.ndarray:
    """Per-seed final training return: the mean return of episodes that ended in the last 5% of iterations.

    NaN for a seed with no episode ending in that window.
    """
    ended_sum = np.asarray(out["metrics"]["ended_return_sum"], dtype=np.float64)
    ended_count = np.asarray(out["metrics"]["ended_count"], dtype=np.float64)
    window = max(1, int(round(ended_sum.shape[-1] * FINAL_FRACTION)))
    total, count = ended_sum[..., -window:].sum(axis=-1), ended_count[..., -window:].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
