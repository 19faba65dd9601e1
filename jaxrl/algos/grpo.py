"""Group Relative Policy Optimisation: PPO's clipped objective with no value network.

Each update resets `env.num_envs` (B) start states and runs a group of `group_size` (G)
rollouts from each: the G copies of a group share every env key (see `VecEnv`), so they
start from the same state and differ only through their sampled actions. A rollout runs
its first episode for up to `horizon` steps; later steps are padding, masked out. Each
step's advantage is its rollout's discounted return normalised within the group (or, with
`per_step_advantages`, its reward-to-go normalised over the group at that step). Then
epochs of minibatch steps on the clipped surrogate, plus an optional KL penalty towards a
reference policy that is refreshed to the current one every `ref_refresh_every` updates.

Read top to bottom: config -> state -> `make_rollout` -> `make` (loss, learn, update).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

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
from jaxrl.evaluation import episode_limit
from jaxrl.networks import Actor
from jaxrl.rl import approx_kl, clipped_surrogate_loss, group_advantages, linear_decay
from jaxrl.rl.losses import masked_mean


class HParams(NamedTuple):
    """Hyperparameters that may differ between members of one population (vmappable)."""

    lr: chex.Array
    gamma: chex.Array
    clip_eps: chex.Array
    ent_coef: chex.Array
    kl_coef: chex.Array
    max_grad_norm: chex.Array


@dataclasses.dataclass(frozen=True)
class Config(PolicyGradientConfig):
    """The `algo:` section for GRPO; `env.num_envs` is B, the start states per update."""

    name: str = "grpo"
    group_size: int = 8  # G rollouts per start state (at least 2: a group of one has no baseline)
    horizon: int = 0  # steps per rollout; 0: the env's time limit
    per_step_advantages: bool = False
    kl_coef: float = 0.0  # weight of KL(policy || reference); 0: no penalty
    ref_refresh_every: int = 10  # updates between copies of the policy into the reference

    def __post_init__(self):
        super().__post_init__()
        if self.group_size < 2:
            raise ConfigError(f"algo.group_size must be at least 2 (a group of one rollout has no "
                              f"baseline to compare with), got {self.group_size}")
        for key in ("horizon", "kl_coef"):
            if getattr(self, key) < 0:
                raise ConfigError(f"algo.{key} must be >= 0, got {getattr(self, key)}")
        if self.ref_refresh_every < 1:
            raise ConfigError(f"algo.ref_refresh_every must be at least 1, got {self.ref_refresh_every}")

    def hparams(self) -> HParams:
        return HParams(*(jnp.float32(getattr(self, f)) for f in HParams._fields))


class GRPOState(NamedTuple):
    params: Any
    ref_params: Any  # the KL penalty's reference policy
    opt_state: optax.OptState
    env_state: Any  # kept for the wrappers' running statistics; every update resets it
    key: chex.PRNGKey
    update_step: chex.Array


class Rollouts(NamedTuple):
    """G rollouts from each of B start states, time-major: [T, B * G, ...]."""

    obs: chex.Array
    action: chex.Array  # raw actions (see `jaxrl.networks.distributions`)
    log_prob: chex.Array
    reward: chex.Array
    alive: chex.Array  # still in the rollout's first episode at this step
    episode_done: chex.Array  # the first episode ended at this step
    episode_return: chex.Array
    episode_length: chex.Array


class Minibatch(NamedTuple):
    obs: chex.Array
    action: chex.Array
    log_prob: chex.Array
    ref_log_prob: chex.Array
    advantage: chex.Array
    alive: chex.Array


def build_network(config: Config, env: Any, env_params: Any) -> Actor:
    """The policy network (no critic) for this env's observations and action space."""
    return Actor(config.network, *resolve_policy(config, env, env_params))


def make_rollout(network: Actor, env: Any, env_params: Any, horizon: int) -> Callable:
    """`rollout(params, env_state, key) -> (env_state, Rollouts)`: fresh grouped start
    states (keeping the wrappers' statistics), then `horizon` steps with sampled actions."""

    def rollout(params: Any, env_state: Any, key: chex.PRNGKey) -> tuple[Any, Rollouts]:
        reset_key, key = jax.random.split(key)
        obs, env_state = env.reset_from(reset_key, env_params, env_state)

        def step(carry, _):
            env_state, obs, alive, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            dist = network.apply(params, obs)
            action = dist.sample(act_key)
            next_obs, env_state, reward, _, _, info = env.step(
                step_key, env_state, dist.to_env(action), env_params)
            done = info["episode_done"]
            out = Rollouts(obs, action, dist.log_prob(action), reward, alive, done & alive,
                           info["episode_return"], info["episode_length"])
            return (env_state, next_obs, alive & ~done, key), out

        alive = jnp.ones(env.num_envs, bool)
        (env_state, _, _, _), rollouts = jax.lax.scan(
            step, (env_state, obs, alive, key), length=horizon)
        return env_state, rollouts

    return rollout


def make(config: Config, env: Any, env_params: Any, total_env_steps: int,
         grad_sync: GradSync | None = None) -> Algorithm:
    """Binds GRPO to a grouped vectorised env (`make_vec(..., group_size=G)`, B * G copies);
    `grad_sync` transforms every gradient before the optimiser (data-parallel populations)."""
    group_size = config.group_size
    if getattr(env, "group_size", 1) != group_size:
        raise ConfigError(f"GRPO needs an env built with group_size={group_size} "
                          f"(jaxrl.envs.make_vec(..., num_envs=B * G, group_size=G))")
    num_groups = env.num_envs // group_size
    horizon = config.horizon or episode_limit(env_params)
    batch_size = env.num_envs * horizon
    num_updates = count_updates(
        config, batch_size, total_env_steps,
        f"B x G x horizon = {num_groups} x {group_size} x {horizon}",
        "env.num_envs, algo.group_size or algo.horizon")
    network = build_network(config, env, env_params)
    rollout = make_rollout(network, env, env_params, horizon)

    def init(key: chex.PRNGKey, hp: HParams) -> GRPOState:
        net_key, env_key, key = jax.random.split(key, 3)
        obs, env_state = env.reset(env_key, env_params)
        params = network.init(net_key, obs)
        opt_state = optimizer(hp.max_grad_norm, hp.lr, config.adam_eps).init(params)
        return GRPOState(params, params, opt_state, env_state, key, jnp.int32(0))

    def act(params: Any, obs: chex.Array, key: chex.PRNGKey, deterministic: bool = False):
        dist = network.apply(params, obs)
        return dist.to_env(dist.mode() if deterministic else dist.sample(key))

    def explain(params: Any, obs: chex.Array) -> dict[str, chex.Array]:
        return describe_policy(network.apply(params, obs))

    def loss_fn(params: Any, minibatch: Minibatch, hp: HParams):
        dist = network.apply(params, minibatch.obs)
        log_prob = dist.log_prob(minibatch.action)
        policy_loss, extras = clipped_surrogate_loss(
            log_prob, minibatch.log_prob, minibatch.advantage, clip_eps=hp.clip_eps,
            mask=minibatch.alive, return_extras=True)
        kl = approx_kl(minibatch.ref_log_prob, log_prob, minibatch.alive)
        entropy = masked_mean(dist.entropy(), minibatch.alive)
        total = policy_loss + hp.kl_coef * kl - hp.ent_coef * entropy
        return total, {"policy_loss": policy_loss, "kl_to_reference": kl, "entropy": entropy,
                       "approx_kl": approx_kl(log_prob, minibatch.log_prob, minibatch.alive),
                       "clip_fraction": extras["clip_fraction"]}

    def learn(state: GRPOState, rollouts: Rollouts, hp: HParams) -> tuple[GRPOState, Metrics]:
        """Group advantages, then `num_epochs` passes of minibatch gradient steps."""
        grouped = lambda x: x.reshape((horizon, num_groups, group_size))
        advantages = group_advantages(grouped(rollouts.reward), grouped(rollouts.alive), hp.gamma,
                                      config.per_step_advantages).reshape(rollouts.reward.shape)
        refresh = state.update_step % config.ref_refresh_every == 0
        ref_params = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                                  state.params, state.ref_params)
        ref_log_prob = network.apply(ref_params, rollouts.obs).log_prob(rollouts.action)
        flat = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), Minibatch(
            rollouts.obs, rollouts.action, rollouts.log_prob, ref_log_prob, advantages,
            rollouts.alive))
        lr = linear_decay(hp.lr, state.update_step, num_updates) if config.anneal_lr else hp.lr
        key, epoch_key = jax.random.split(state.key)
        params, opt_state, metrics = minibatch_epochs(
            state.params, state.opt_state, flat, epoch_key, lambda p, mb: loss_fn(p, mb, hp),
            optimizer(hp.max_grad_norm, lr, config.adam_eps), config.num_epochs,
            config.num_minibatches, grad_sync)
        new_state = state._replace(params=params, ref_params=ref_params, opt_state=opt_state,
                                   key=key, update_step=state.update_step + 1)
        return new_state, {**metrics, "lr": lr, "alive_fraction": rollouts.alive.mean()}

    def learn_and_report(state: GRPOState, rollouts: Rollouts, hp: HParams) -> tuple[GRPOState, Metrics]:
        state, metrics = learn(state, rollouts, hp)
        return state, {**metrics, **finished_episode_metrics(rollouts)}  # first episodes only

    def update(state: GRPOState, hp: HParams) -> tuple[GRPOState, Metrics]:
        rollout_key, key = jax.random.split(state.key)
        env_state, rollouts = rollout(state.params, state.env_state, rollout_key)
        return learn_and_report(state._replace(env_state=env_state, key=key), rollouts, hp)

    # ---- the same pieces for envs stepped on the host (jaxrl.host_loop), which resets
    # every group from one seed at the start of each update (`reset_groups`) ------------
    def host_act(state: GRPOState, obs: chex.Array, hp: HParams):
        key, act_key = jax.random.split(state.key)
        dist = network.apply(state.params, obs)
        action = dist.sample(act_key)
        return key, dist.to_env(action), (action, dist.log_prob(action))

    def host_learn(state: GRPOState, steps: HostSteps, hp: HParams) -> tuple[GRPOState, Metrics]:
        action, log_prob = steps.record
        done = steps.episode_done
        alive = jnp.cumsum(done, axis=0) - done == 0  # no episode ended before this step
        return learn_and_report(state, Rollouts(
            steps.obs, action, log_prob, steps.reward, alive, done & alive,
            steps.episode_return, steps.episode_length), hp)

    return Algorithm("grpo", init, update, act, config.hparams(), batch_size, num_updates,
                     explain=explain,
                     host=HostHooks(host_act, host_learn, horizon, reset_groups=group_size),
                     with_grad_sync=lambda sync: make(config, env, env_params, total_env_steps, sync))
