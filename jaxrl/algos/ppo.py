"""Proximal Policy Optimisation with a categorical, Gaussian or Beta policy, as pure functions.

Read top to bottom: config -> state -> `collect` (rollout with `lax.scan`) -> `learn`
(GAE, then epochs x minibatches of clipped-surrogate updates) -> `make`, which binds
them to an env into an `Algorithm`. `collect` and `learn` are separate so that a host
env loop can collect its own batch and reuse `learn` unchanged. The policy head follows
`algo.policy` (see `jaxrl.networks.policy`); the rest of the file does not depend on it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrl.algos.base import Algorithm, GradSync, HostHooks, HostSteps, Metrics
from jaxrl.algos.policy_gradient import (
    PolicyGradientConfig, count_updates, describe_policy, finished_episode_metrics,
    minibatch_epochs, optimizer, resolve_policy,
)
from jaxrl.errors import ConfigError
from jaxrl.networks import ActorCritic
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
class Config(PolicyGradientConfig):
    """The `algo:` section for PPO. Fields of `HParams` are vmappable; the rest fix shapes."""

    name: str = "ppo"
    gae_lambda: float = 0.95
    vf_coef: float = 0.5
    num_steps: int = 128
    normalize_advantages: bool = True
    clip_value_loss: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.num_steps <= 0:
            raise ConfigError(f"algo.num_steps must be positive, got {self.num_steps}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"algo.gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        if self.vf_coef < 0:
            raise ConfigError(f"algo.vf_coef must be >= 0, got {self.vf_coef}")

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
    action: chex.Array  # the raw action (see `jaxrl.networks.distributions`)
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


def build_network(config: Config, env: Any, env_params: Any) -> ActorCritic:
    """The actor-critic for this env's observations and action space."""
    spec, obs_ndim = resolve_policy(config, env, env_params)
    return ActorCritic(config.network, spec, obs_ndim)


def make(config: Config, env: Any, env_params: Any, total_env_steps: int,
         grad_sync: GradSync | None = None) -> Algorithm:
    """Binds PPO to a vectorised env (see `jaxrl.envs.make_vec`) for `total_env_steps` per agent;
    `grad_sync` transforms every gradient before the optimiser (data-parallel populations)."""
    batch_size = env.num_envs * config.num_steps
    num_updates = count_updates(
        config, batch_size, total_env_steps,
        f"env.num_envs x algo.num_steps = {env.num_envs} x {config.num_steps}",
        "env.num_envs/algo.num_steps")
    network = build_network(config, env, env_params)

    def init(key: chex.PRNGKey, hp: HParams) -> PPOState:
        net_key, env_key, key = jax.random.split(key, 3)
        obs, env_state = env.reset(env_key, env_params)
        params = network.init(net_key, obs)
        opt_state = optimizer(hp.max_grad_norm, hp.lr, config.adam_eps).init(params)
        return PPOState(params, opt_state, env_state, obs, key, jnp.int32(0))

    def act(params: Any, obs: chex.Array, key: chex.PRNGKey, deterministic: bool = False):
        dist, _ = network.apply(params, obs)
        return dist.to_env(dist.mode() if deterministic else dist.sample(key))

    def explain(params: Any, obs: chex.Array) -> dict[str, chex.Array]:
        dist, value = network.apply(params, obs)
        return {**describe_policy(dist), "value": value}

    def decide(params: Any, obs: chex.Array, key: chex.PRNGKey):
        """A sampled action for the env, and what learning needs of it: (raw action, log-prob, value)."""
        dist, value = network.apply(params, obs)
        action = dist.sample(key)
        return dist.to_env(action), (action, dist.log_prob(action), value)

    def collect(state: PPOState) -> tuple[PPOState, Transition]:
        """Runs `num_steps` steps of every env copy with the current policy."""

        def step(carry, _):
            env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            env_action, (action, log_prob, value) = decide(state.params, obs, act_key)
            next_obs, env_state, reward, terminated, truncated, info = env.step(
                step_key, env_state, env_action, env_params)
            transition = Transition(
                obs, action, log_prob, value, reward, terminated, truncated,
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
        policy_loss, extras = clipped_surrogate_loss(
            log_prob, minibatch.log_prob, advantages, clip_eps=hp.clip_eps, return_extras=True)
        v_loss = (value_loss(values, minibatch.target, old_values=minibatch.value, clip_eps=hp.clip_eps)
                  if config.clip_value_loss else value_loss(values, minibatch.target))
        entropy = dist.entropy().mean()
        total = policy_loss + hp.vf_coef * v_loss - hp.ent_coef * entropy
        return total, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy,
                       "approx_kl": approx_kl(log_prob, minibatch.log_prob),
                       "clip_fraction": extras["clip_fraction"]}

    def learn(state: PPOState, batch: Transition, hp: HParams) -> tuple[PPOState, Metrics]:
        """GAE on the batch, then `num_epochs` passes of minibatch gradient steps."""
        next_values = network.apply(state.params, batch.final_obs, method=ActorCritic.value)
        advantages, targets = gae_advantages(batch.reward, batch.value, next_values,
                                             batch.terminated, batch.truncated,
                                             gamma=hp.gamma, gae_lambda=hp.gae_lambda, time_axis=0)
        lr = (linear_decay(hp.lr, state.update_step, num_updates) if config.anneal_lr else hp.lr)
        flat = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), Minibatch(
            batch.obs, batch.action, batch.log_prob, batch.value, advantages, targets))
        key, epoch_key = jax.random.split(state.key)
        params, opt_state, metrics = minibatch_epochs(
            state.params, state.opt_state, flat, epoch_key, lambda p, mb: loss_fn(p, mb, hp),
            optimizer(hp.max_grad_norm, lr, config.adam_eps), config.num_epochs,
            config.num_minibatches, grad_sync)
        new_state = state._replace(params=params, opt_state=opt_state, key=key,
                                   update_step=state.update_step + 1)
        return new_state, {**metrics, "lr": lr}

    def learn_and_report(state: PPOState, batch: Transition, hp: HParams) -> tuple[PPOState, Metrics]:
        state, metrics = learn(state, batch, hp)
        return state, {**metrics, **finished_episode_metrics(batch)}

    def update(state: PPOState, hp: HParams) -> tuple[PPOState, Metrics]:
        state, batch = collect(state)
        return learn_and_report(state, batch, hp)

    # ---- the same pieces for envs stepped on the host (jaxrl.host_loop) ----------------
    def host_act(state: PPOState, obs: chex.Array, hp: HParams):
        key, act_key, _ = jax.random.split(state.key, 3)  # as `collect` spends its key
        env_action, record = decide(state.params, obs, act_key)
        return key, env_action, record

    def host_learn(state: PPOState, steps: HostSteps, hp: HParams) -> tuple[PPOState, Metrics]:
        action, log_prob, value = steps.record
        return learn_and_report(state, Transition(
            steps.obs, action, log_prob, value, steps.reward, steps.terminated, steps.truncated,
            steps.final_obs, steps.episode_done, steps.episode_return, steps.episode_length), hp)

    return Algorithm("ppo", init, update, act, config.hparams(), batch_size, num_updates,
                     explain=explain, host=HostHooks(host_act, host_learn, config.num_steps),
                     with_grad_sync=lambda sync: make(config, env, env_params, total_env_steps, sync))
