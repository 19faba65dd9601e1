"""An independent single-file PPO in the style of PureJaxRL: the `reference` system of
`jaxrl bench peers` (run by `reference_worker.py`), so it never imports jaxrl.

Written from scratch (not copied) to follow the structure of PureJaxRL's `ppo.py`:
`make_train(config)` returns `train(rng)`, one function made of nested `lax.scan`s
(update step -> env-step scan -> GAE -> epochs -> minibatches), and a population is
`jax.jit(jax.vmap(make_train(config)))(jax.random.split(rng, num_seeds))` on one device.

Settings are PureJaxRL's CartPole defaults: separate 64-64 tanh actor and critic with
orthogonal init, Adam (eps 1e-5) behind global-norm clipping 0.5 with the learning rate
annealed linearly from 2.5e-4, 4 envs x 128 steps, 4 epochs x 4 minibatches, gamma 0.99,
lambda 0.95, clip 0.2, entropy 0.01, value 0.5 with value clipping, and per-minibatch
advantage normalisation on gymnax's CartPole-v1 (done = terminated | truncated).

One deliberate difference: PureJaxRL returns the whole per-step `info` dict as metrics
([updates, steps, envs] arrays); here the scan returns only the per-update mean of the
returned episode returns, which is smaller and so can only make the reference faster.

After training, `make_greedy_eval` plays greedy (argmax) episodes with the trained actor,
outside the timed run, so the suite compares the same greedy returns for every system.

`jaxrl bench peers --budget tiny --only ppo-cartpole` runs it beside jaxrl in a minute or two.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax

DEFAULT_CONFIG: dict[str, Any] = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 500_000,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ADAM_EPS": 1e-5,
    "ANNEAL_LR": True,
    "ENV_NAME": "CartPole-v1",
}


def seq_orthogonal(scale: float) -> Callable:
    """Flax's orthogonal initializer, run one seed at a time under `vmap` (avoids a jaxlib 0.10 CPU deadlock)."""
    base = nn.initializers.orthogonal(scale)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.custom_batching.sequential_vmap(lambda k: base(k, shape, dtype))(key)

    return init


def dense(features: int, scale: float) -> nn.Dense:
    """A dense layer with orthogonal(scale) kernel and zero bias."""
    return nn.Dense(features, kernel_init=seq_orthogonal(scale), bias_init=nn.initializers.zeros)


class ActorCritic(nn.Module):
    """Separate 64-64 tanh actor (categorical logits) and critic (scalar value)."""

    action_dim: int
    hidden: int = 64

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        root2 = float(np.sqrt(2.0))
        a = nn.tanh(dense(self.hidden, root2)(obs))
        a = nn.tanh(dense(self.hidden, root2)(a))
        logits = dense(self.action_dim, 0.01)(a)
        c = nn.tanh(dense(self.hidden, root2)(obs))
        c = nn.tanh(dense(self.hidden, root2)(c))
        value = dense(1, 1.0)(c)
        return logits, jnp.squeeze(value, axis=-1)


def log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """Log-probability of integer `action` under categorical `logits`."""
    logp = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(logp, action[..., None], axis=-1)[..., 0]


def entropy(logits: jax.Array) -> jax.Array:
    """Entropy of categorical `logits`."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


class LogState(NamedTuple):
    """Episode bookkeeping per env, like PureJaxRL's LogWrapper state."""

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array
    returned_episode_return: jax.Array
    returned_episode_length: jax.Array


class EpisodeLogger:
    """Wraps a gymnax env: done = terminated | truncated, and tracks the last finished episode's return."""

    def __init__(self, env: Any):
        self.env = env

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, LogState]:
        """Resets the env with zeroed episode counters."""
        obs, env_state = self.env.reset(key, params)
        zero = jnp.float32(0.0)
        return obs, LogState(env_state, zero, jnp.int32(0), zero, jnp.int32(0))

    def step(self, key: jax.Array, state: LogState, action: jax.Array,
             params: Any) -> tuple[jax.Array, LogState, jax.Array, jax.Array, dict]:
        """Steps (auto-resetting) and updates the episode counters."""
        obs, env_state, reward, terminated, truncated, _ = self.env.step(key, state.env_state, action, params)
        done = jnp.logical_or(terminated, truncated)
        ret = state.episode_return + reward
        length = state.episode_length + 1
        state = LogState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, ret),
            episode_length=jnp.where(done, 0, length),
            returned_episode_return=jnp.where(done, ret, state.returned_episode_return),
            returned_episode_length=jnp.where(done, length, state.returned_episode_length),
        )
        info = {"returned_episode_returns": state.returned_episode_return, "returned_episode": done}
        return obs, state, reward, done, info


class Transition(NamedTuple):
    """One env step of every env."""

    done: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    obs: jax.Array
    info: dict


def gae_advantages(traj: Transition, last_value: jax.Array, gamma: float, gae_lambda: float) -> jax.Array:
    """Generalised advantage estimates of a time-major rollout, bootstrapped from `last_value`."""

    def gae_step(carry, t: Transition):
        gae, next_value = carry
        not_done = 1.0 - t.done.astype(jnp.float32)
        delta = t.reward + gamma * next_value * not_done - t.value
        gae = delta + gamma * gae_lambda * not_done * gae
        return (gae, t.value), gae

    _, advantages = jax.lax.scan(gae_step, (jnp.zeros_like(last_value), last_value), traj, reverse=True, unroll=16)
    return advantages


def ppo_loss(network: nn.Module, config: dict[str, Any], params: Any, t: Transition, adv: jax.Array,
             target: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """PPO's clipped objective with the clipped value loss and the entropy bonus, on one minibatch
    (advantages normalised within it)."""
    logits, value = network.apply(params, t.obs)
    new_logp = log_prob(logits, t.action)
    value_clipped = t.value + jnp.clip(value - t.value, -config["CLIP_EPS"], config["CLIP_EPS"])
    value_loss = 0.5 * jnp.maximum(jnp.square(value - target), jnp.square(value_clipped - target)).mean()
    ratio = jnp.exp(new_logp - t.log_prob)
    norm_adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    actor_loss = -jnp.minimum(
        ratio * norm_adv, jnp.clip(ratio, 1.0 - config["CLIP_EPS"], 1.0 + config["CLIP_EPS"]) * norm_adv).mean()
    ent = entropy(logits).mean()
    total = actor_loss + config["VF_COEF"] * value_loss - config["ENT_COEF"] * ent
    return total, (value_loss, actor_loss, ent)


def shuffled_minibatches(batch: Any, rng: jax.Array, num_minibatches: int) -> Any:
    """A rollout's leaves ([T, N, ...]) flattened to [T * N, ...], shuffled, and cut into
    `num_minibatches` minibatches: [num_minibatches, T * N / num_minibatches, ...]."""
    leaf = jax.tree.leaves(batch)[0]
    batch_size = leaf.shape[0] * leaf.shape[1]
    permutation = jax.random.permutation(rng, batch_size)
    flat = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), batch)
    shuffled = jax.tree.map(lambda x: jnp.take(x, permutation, axis=0), flat)
    return jax.tree.map(lambda x: x.reshape((num_minibatches, batch_size // num_minibatches) + x.shape[1:]),
                        shuffled)


def make_train(config: dict[str, Any]) -> Callable[[jax.Array], dict[str, Any]]:
    """Returns `train(rng)`: a whole PPO run of one agent as nested `lax.scan`s."""
    config = {**DEFAULT_CONFIG, **config}
    num_envs, num_steps = config["NUM_ENVS"], config["NUM_STEPS"]
    num_updates = config["TOTAL_TIMESTEPS"] // num_steps // num_envs
    env, env_params = gymnax.make(config["ENV_NAME"])
    env = EpisodeLogger(env)
    num_actions = env.env.action_space(env_params).n
    obs_shape = env.env.observation_space(env_params).shape

    def lr_schedule(count: jax.Array) -> jax.Array:
        """Linear decay from LR to 0 over all updates (one count per minibatch step)."""
        frac = 1.0 - (count // (config["NUM_MINIBATCHES"] * config["UPDATE_EPOCHS"])) / num_updates
        return config["LR"] * frac

    def train(rng: jax.Array) -> dict[str, Any]:
        network = ActorCritic(num_actions)
        rng, init_rng = jax.random.split(rng)
        params = network.init(init_rng, jnp.zeros(obs_shape, jnp.float32))
        lr = lr_schedule if config["ANNEAL_LR"] else config["LR"]
        tx = optax.chain(optax.clip_by_global_norm(config["MAX_GRAD_NORM"]),
                         optax.adam(learning_rate=lr, eps=config["ADAM_EPS"]))
        opt_state = tx.init(params)

        rng, reset_rng = jax.random.split(rng)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_rng, num_envs), env_params)

        def update_step(runner_state, _):
            def env_step(runner_state, _):
                params, opt_state, env_state, last_obs, rng = runner_state
                rng, act_rng, step_rng = jax.random.split(rng, 3)
                logits, value = network.apply(params, last_obs)
                action = jax.random.categorical(act_rng, logits)
                logp = log_prob(logits, action)
                obs, env_state, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(step_rng, num_envs), env_state, action, env_params)
                transition = Transition(done, action, value, reward, logp, last_obs, info)
                return (params, opt_state, env_state, obs, rng), transition

            runner_state, traj = jax.lax.scan(env_step, runner_state, None, num_steps)
            params, opt_state, env_state, last_obs, rng = runner_state

            _, last_value = network.apply(params, last_obs)
            advantages = gae_advantages(traj, last_value, config["GAMMA"], config["GAE_LAMBDA"])
            targets = advantages + traj.value

            def epoch(update_state, _):
                def minibatch_step(train_state, batch):
                    params, opt_state = train_state
                    t, adv, target = batch
                    (loss, aux), grads = jax.value_and_grad(
                        lambda p: ppo_loss(network, config, p, t, adv, target), has_aux=True)(params)
                    updates, opt_state = tx.update(grads, opt_state, params)
                    params = optax.apply_updates(params, updates)
                    return (params, opt_state), (loss, aux)

                params, opt_state, traj, advantages, targets, rng = update_state
                rng, perm_rng = jax.random.split(rng)
                minibatches = shuffled_minibatches((traj, advantages, targets), perm_rng, config["NUM_MINIBATCHES"])
                (params, opt_state), losses = jax.lax.scan(minibatch_step, (params, opt_state), minibatches)
                return (params, opt_state, traj, advantages, targets, rng), losses

            update_state = (params, opt_state, traj, advantages, targets, rng)
            update_state, _ = jax.lax.scan(epoch, update_state, None, config["UPDATE_EPOCHS"])
            params, opt_state, _, _, _, rng = update_state
            mean_return = traj.info["returned_episode_returns"].mean()
            return (params, opt_state, env_state, last_obs, rng), mean_return

        rng, loop_rng = jax.random.split(rng)
        runner_state = (params, opt_state, env_state, obs, loop_rng)
        runner_state, returns = jax.lax.scan(update_step, runner_state, None, num_updates)
        return {"runner_state": runner_state, "metrics": {"returned_episode_returns": returns}}

    return train


def greedy_episodes(config: dict[str, Any], act: Callable[[Any, jax.Array], jax.Array], params: Any,
                    key: jax.Array, episodes: int) -> jax.Array:
    """Undiscounted returns of `episodes` greedy episodes played side by side with
    `act(params, obs)`, each counted until it first ends (at most the env's step limit)."""
    env, env_params = gymnax.make(config["ENV_NAME"])
    reset_key, steps_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, episodes), env_params)

    def step(carry, step_key):
        obs, state, returns, alive = carry
        obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(step_key, episodes), state, act(params, obs), env_params)
        returns = returns + reward * alive
        alive = alive * (1.0 - jnp.logical_or(terminated, truncated).astype(jnp.float32))
        return (obs, state, returns, alive), None

    start = (obs, state, jnp.zeros(episodes), jnp.ones(episodes))
    (_, _, returns, _), _ = jax.lax.scan(step, start, jax.random.split(steps_key, env_params.max_steps_in_episode))
    return returns


def greedy_evaluator(config: dict[str, Any], network_class: type, episodes: int,
                     scores: Callable[[Any], jax.Array] = lambda out: out) -> Callable[[Any, jax.Array], jax.Array]:
    """`evaluate(params, key)`: returns of `episodes` episodes taking the action with the largest
    `scores(network output)` (a full config: defaults already merged)."""
    env, env_params = gymnax.make(config["ENV_NAME"])
    network = network_class(env.action_space(env_params).n)

    def act(params: Any, obs: jax.Array) -> jax.Array:
        return jnp.argmax(scores(network.apply(params, obs)), axis=-1)

    return lambda params, key: greedy_episodes(config, act, params, key, episodes)


def make_greedy_eval(config: dict[str, Any], episodes: int) -> Callable[[Any, jax.Array], jax.Array]:
    """`evaluate(params, key)`: returns of `episodes` episodes taking the actor's most likely action."""
    return greedy_evaluator({**DEFAULT_CONFIG, **config}, ActorCritic, episodes, lambda out: out[0])


def trained_params(out: dict[str, Any]) -> Any:
    """The network parameters at the end of training (of every seed, under `vmap`)."""
    return out["runner_state"][0]


def env_steps_per_seed(config: dict[str, Any]) -> int:
    """Env steps one seed actually takes (whole updates only, as `make_train` runs)."""
    config = {**DEFAULT_CONFIG, **config}
    return (config["TOTAL_TIMESTEPS"] // config["NUM_STEPS"] // config["NUM_ENVS"]) * config["NUM_STEPS"] * config["NUM_ENVS"]


def final_returns(out: dict[str, Any]) -> np.ndarray:
    """Per-seed final training return: the mean returned episode return over the last update."""
    return np.asarray(out["metrics"]["returned_episode_returns"])[..., -1]


def timed_run(make: Callable, config: dict[str, Any], num_seeds: int, seed: int = 0
              ) -> tuple[Any, float, float]:
    """jit(vmap(make(config))) over `num_seeds` keys: (output, compile seconds, run seconds)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num_seeds)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(make(config))).lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    return out, compile_s, time.perf_counter() - start
