"""Proximal Policy Optimisation (categorical policy) as pure functions of one agent.

Read top to bottom: config -> state -> `collect` (rollout with `lax.scan`) -> `learn`
(GAE, then epochs x minibatches of clipped-surrogate updates) -> `make`, which binds
them to an env into an `Algorithm`. `collect` and `learn` are separate so that a host
env loop can collect its own batch and reuse `learn` unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrl.algos.base import Algorithm, Metrics
from jaxrl.envs import describe_space, spaces
from jaxrl.errors import ConfigError
from jaxrl.networks import ActorCritic, NetworkConfig, check_torso
from jaxrl.rl import approx_kl, clipped_surrogate_loss, gae_advantages, linear_decay, value_loss


class HParams(NamedTuple):
    """Hyperparameters that may differ between members of one population (vmappable)."""

    lr: chex.Array
    gamma: chex.Array
    gae_lambda: chex.Array
    clip_eps: chex.Array
    ent_coef: chex.Array
    vf_coef: chex.Array
    max_grad_norm: chex.Array


@dataclasses.dataclass(frozen=True)
class Config:
    """The `algo:` section for PPO. Fields of `HParams` are vmappable; the rest fix shapes."""

    name: str = "ppo"
    lr: float = 2.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    num_steps: int = 128
    num_epochs: int = 4
    num_minibatches: int = 4
    anneal_lr: bool = True
    normalize_advantages: bool = True
    clip_value_loss: bool = True
    adam_eps: float = 1e-5
    network: NetworkConfig = NetworkConfig()

    def __post_init__(self):
        positive = ("lr", "num_steps", "num_epochs", "num_minibatches", "adam_eps", "max_grad_norm")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"algo.{key} must be positive, got {getattr(self, key)}")
        for key in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"algo.{key} must lie in [0, 1], got {getattr(self, key)}")
        for key in ("clip_eps", "ent_coef", "vf_coef"):
            if getattr(self, key) < 0:
                raise ConfigError(f"algo.{key} must be >= 0, got {getattr(self, key)}")

    def hparams(self) -> HParams:
        return HParams(*(jnp.float32(getattr(self, f)) for f in HParams._fields))


class PPOState(NamedTuple):
    params: Any
    opt_state: optax.OptState
    env_state: Any
    obs: chex.Array
    key: chex.PRNGKey
    update_step: chex.Array  # updates done so far, for schedules


class Transition(NamedTuple):
    """One env step of every copy, time-major after `collect`'s scan: [T, num_envs, ...]."""

    obs: chex.Array
    action: chex.Array
    log_prob: chex.Array
    value: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    final_obs: chex.Array  # observation the step reached, before auto-reset
    episode_done: chex.Array
    episode_return: chex.Array
    episode_length: chex.Array


class Minibatch(NamedTuple):
    """Only what the loss reads, so shuffling moves no other data."""

    obs: chex.Array
    action: chex.Array
    log_prob: chex.Array
    value: chex.Array
    advantage: chex.Array
    target: chex.Array


def episode_metrics(batch: Transition) -> Metrics:
    """Sums over the episodes that ended in `batch`, as `algos.base` asks."""
    done = batch.episode_done.astype(jnp.float32)
    return {"episodes": done.sum(), "episode_return": (batch.episode_return * done).sum(),
            "episode_length": (batch.episode_length * done).sum()}


def _optimizer(hp: HParams, lr: chex.Array, adam_eps: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm),
                       optax.scale_by_adam(eps=adam_eps), optax.scale(-lr))


def build_network(config: Config, env: Any, env_params: Any) -> ActorCritic:
    """The actor-critic for this env's observation shape and number of actions."""
    obs_shape = tuple(env.observation_space(env_params).shape)
    try:
        check_torso(config.network, len(obs_shape))
    except ValueError as error:
        raise ConfigError(f"algo.{error}") from None
    return ActorCritic(config.network, env.action_space(env_params).n, len(obs_shape))


def make(config: Config, env: Any, env_params: Any, total_env_steps: int) -> Algorithm:
    """Binds PPO to a vectorised env (see `jaxrl.envs.make_vec`) for `total_env_steps` per agent."""
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Discrete):
        raise ConfigError(
            f"PPO with a categorical policy needs a Discrete action space, but this env has "
            f"{describe_space(action_space)}; choose a discrete env")
    num_envs = env.num_envs
    batch_size = num_envs * config.num_steps
    if batch_size % config.num_minibatches:
        raise ConfigError(
            f"algo.num_minibatches={config.num_minibatches} must divide the batch of "
            f"env.num_envs x algo.num_steps = {num_envs} x {config.num_steps} = {batch_size}")
    num_updates = total_env_steps // batch_size
    if num_updates < 1:
        raise ConfigError(f"total_env_steps={total_env_steps} is less than one update's batch "
                          f"({batch_size} steps); raise it or shrink env.num_envs/algo.num_steps")
    minibatch_size = batch_size // config.num_minibatches
    network = build_network(config, env, env_params)

    def init(key: chex.PRNGKey, hp: HParams) -> PPOState:
        net_key, env_key, key = jax.random.split(key, 3)
        obs, env_state = env.reset(env_key, env_params)
        params = network.init(net_key, obs)
        opt_state = _optimizer(hp, hp.lr, config.adam_eps).init(params)
        return PPOState(params, opt_state, env_state, obs, key, jnp.int32(0))

    def act(params: Any, obs: chex.Array, key: chex.PRNGKey, deterministic: bool = False):
        dist, _ = network.apply(params, obs)
        return dist.mode() if deterministic else dist.sample(key)

    def explain(params: Any, obs: chex.Array) -> dict[str, chex.Array]:
        dist, value = network.apply(params, obs)
        return {"action_probs": jax.nn.softmax(dist.logits), "value": value}

    def collect(state: PPOState) -> tuple[PPOState, Transition]:
        """Runs `num_steps` steps of every env copy with the current policy."""

        def step(carry, _):
            env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            dist, value = network.apply(state.params, obs)
            action = dist.sample(act_key)
            next_obs, env_state, reward, terminated, truncated, info = env.step(
                step_key, env_state, action, env_params)
            transition = Transition(
                obs, action, dist.log_prob(action), value, reward, terminated, truncated,
                info["final_observation"], info["episode_done"], info["episode_return"],
                info["episode_length"])
            return (env_state, next_obs, key), transition

        (env_state, obs, key), batch = jax.lax.scan(
            step, (state.env_state, state.obs, state.key), length=config.num_steps)
        return state._replace(env_state=env_state, obs=obs, key=key), batch

    def loss_fn(params, minibatch: Minibatch, hp: HParams):
        dist, values = network.apply(params, minibatch.obs)
        log_prob = dist.log_prob(minibatch.action)
        advantages = minibatch.advantage
        if config.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss, clip_fraction = clipped_surrogate_loss(
            log_prob, minibatch.log_prob, advantages, hp.clip_eps)
        v_loss = value_loss(values, minibatch.value, minibatch.target, hp.clip_eps,
                            config.clip_value_loss)
        entropy = dist.entropy().mean()
        total = policy_loss + hp.vf_coef * v_loss - hp.ent_coef * entropy
        return total, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy,
                       "approx_kl": approx_kl(log_prob, minibatch.log_prob),
                       "clip_fraction": clip_fraction}

    def learn(state: PPOState, batch: Transition, hp: HParams) -> tuple[PPOState, Metrics]:
        """GAE on the batch, then `num_epochs` passes of minibatch gradient steps."""
        next_values = network.apply(state.params, batch.final_obs, method=ActorCritic.value)
        advantages, targets = gae_advantages(batch.reward, batch.value, next_values,
                                             batch.terminated, batch.truncated,
                                             hp.gamma, hp.gae_lambda)
        lr = (linear_decay(hp.lr, state.update_step, num_updates) if config.anneal_lr else hp.lr)
        optimizer = _optimizer(hp, lr, config.adam_eps)
        flat = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), Minibatch(
            batch.obs, batch.action, batch.log_prob, batch.value, advantages, targets))

        def minibatch_step(carry, minibatch: Minibatch):
            params, opt_state = carry
            grads, metrics = jax.grad(loss_fn, has_aux=True)(params, minibatch, hp)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        def epoch(carry, key):
            order = jax.random.permutation(key, batch_size)
            shuffled = jax.tree.map(
                lambda x: x[order].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]),
                flat)
            return jax.lax.scan(minibatch_step, carry, shuffled)

        key, epoch_key = jax.random.split(state.key)
        (params, opt_state), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(epoch_key, config.num_epochs))
        metrics = {name: value.mean() for name, value in metrics.items()}
        new_state = state._replace(params=params, opt_state=opt_state, key=key,
                                   update_step=state.update_step + 1)
        return new_state, {**metrics, "lr": lr}

    def update(state: PPOState, hp: HParams) -> tuple[PPOState, Metrics]:
        state, batch = collect(state)
        state, metrics = learn(state, batch, hp)
        return state, {**metrics, **episode_metrics(batch)}

    return Algorithm("ppo", init, update, act, config.hparams(), batch_size, num_updates,
                     explain=explain)
