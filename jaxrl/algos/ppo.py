"""Proximal Policy Optimisation with a categorical, Gaussian or Beta policy, as pure functions.

Read top to bottom: config -> state -> `policy` (one step's decision) -> `loss` ->
`minibatches` (GAE) -> `learn` (epochs x minibatches of clipped-surrogate steps) -> `make`,
which binds them to an env and a network into an `Algorithm`. Every function takes the
network and the hyperparameters it uses as arguments, so a researcher can import one piece
(say `loss`) and change another. `jaxrl.rollout` drives `policy` and `learn` on jittable
envs, `jaxrl.host_loop` on host envs. Any flax module returning `(distribution, value)`
may stand in for the default `ActorCritic` (see `make`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrl.algos.base import Algorithm, AlgorithmSpec, GradSync, Metrics, either, learning_rate
from jaxrl.algos.policy_gradient import (
    LossFn, PolicyGradientConfig, count_updates, describe_policy, init_agent, minibatch_epochs,
    optimizer, resolve_policy,
)
from jaxrl.errors import ConfigError
from jaxrl.networks import ActorCritic
from jaxrl.rl import approx_kl, clipped_surrogate_loss, gae_advantages, value_loss
from jaxrl.rollout import Steps, episode_metrics, make_update


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


class Record(NamedTuple):
    """What learning keeps of each step's decision, time-major in `Steps.record`."""

    action: chex.Array  # the raw action (see `jaxrl.networks.distributions`)
    log_prob: chex.Array
    value: chex.Array


class Minibatch(NamedTuple):
    """Only what the loss reads, so shuffling moves no other data."""

    obs: chex.Array
    action: chex.Array
    log_prob: chex.Array
    value: chex.Array
    advantage: chex.Array
    target: chex.Array


def build_network(config: Config, env: Any, env_params: Any) -> ActorCritic:
    """The actor-critic that `config.network` and `config.policy` describe for this env."""
    spec, obs_ndim = resolve_policy(config, env, env_params)
    return ActorCritic(config.network, spec, obs_ndim)


# ---- acting -------------------------------------------------------------------------------
def policy(network: nn.Module, state: PPOState, obs: chex.Array, key: chex.PRNGKey,
           hp: HParams) -> tuple[chex.Array, Record]:
    """One step's sampled env actions, and what learning needs of them."""
    dist, value = network.apply(state.params, obs)
    action = dist.sample(seed=key)
    return dist.to_env(action), Record(action, dist.log_prob(action), value)


def act(network: nn.Module, params: Any, obs: chex.Array, key: chex.PRNGKey,
        deterministic: bool | chex.Array = False) -> chex.Array:
    """Evaluation actions: the distribution's mode, or a sample."""
    dist, _ = network.apply(params, obs)
    return dist.to_env(either(deterministic, dist.mode, lambda: dist.sample(seed=key)))


def explain(network: nn.Module, params: Any, obs: chex.Array) -> dict[str, chex.Array]:
    dist, value = network.apply(params, obs)
    return {**describe_policy(dist), "value": value}


def state_values(network: nn.Module, params: Any, obs: chex.Array) -> chex.Array:
    """V(obs), through the network's `value` method when it has one (no policy head)."""
    if callable(getattr(network, "value", None)):
        return network.apply(params, obs, method="value")
    return network.apply(params, obs)[1]


# ---- learning -----------------------------------------------------------------------------
def loss(network: nn.Module, params: Any, minibatch: Minibatch, hp: HParams, *,
         normalize_advantages: bool = True, clip_value_loss: bool = True
         ) -> tuple[chex.Array, dict[str, chex.Array]]:
    """Clipped surrogate + vf_coef x value loss - ent_coef x entropy, and its parts."""
    dist, values = network.apply(params, minibatch.obs)
    log_prob = dist.log_prob(minibatch.action)
    advantages = minibatch.advantage
    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss, extras = clipped_surrogate_loss(
        log_prob, minibatch.log_prob, advantages, clip_eps=hp.clip_eps, return_extras=True)
    v_loss = (value_loss(values, minibatch.target, old_values=minibatch.value, clip_eps=hp.clip_eps)
              if clip_value_loss else value_loss(values, minibatch.target))
    entropy = dist.entropy().mean()
    total = policy_loss + hp.vf_coef * v_loss - hp.ent_coef * entropy
    return total, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy,
                   "approx_kl": approx_kl(log_prob, minibatch.log_prob),
                   "clip_fraction": extras["clip_fraction"]}


def minibatches(network: nn.Module, params: Any, steps: Steps, hp: HParams) -> Minibatch:
    """GAE(lambda) advantages and value targets of a rollout, flattened to [T * num_envs]."""
    record = steps.record
    next_values = state_values(network, params, steps.final_obs)
    advantages, targets = gae_advantages(steps.reward, record.value, next_values, steps.terminated,
                                         steps.truncated, gamma=hp.gamma, gae_lambda=hp.gae_lambda,
                                         time_axis=0)
    batch = Minibatch(steps.obs, record.action, record.log_prob, record.value, advantages, targets)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)


def config_loss(config: Config) -> LossFn:
    """`loss` with the config's advantage normalisation and value clipping."""
    return functools.partial(loss, normalize_advantages=config.normalize_advantages,
                             clip_value_loss=config.clip_value_loss)


def learn(network: nn.Module, config: Config, num_updates: int, state: PPOState, steps: Steps,
          hp: HParams, grad_sync: GradSync | None = None, loss_fn: LossFn | None = None
          ) -> tuple[PPOState, Metrics]:
    """GAE on the rollout, then `num_epochs` passes of shuffled minibatch gradient steps on
    `loss_fn` (default: `loss` as the config sets it)."""
    loss_fn = config_loss(config) if loss_fn is None else loss_fn
    lr = learning_rate(hp.lr, state.update_step, num_updates, config.anneal_lr)
    key, epoch_key = jax.random.split(state.key)
    params, opt_state, metrics = minibatch_epochs(
        state.params, state.opt_state, minibatches(network, state.params, steps, hp), epoch_key,
        functools.partial(loss_fn, network, hp=hp), optimizer(hp.max_grad_norm, lr, config.adam_eps),
        config.num_epochs,
        config.num_minibatches, grad_sync)
    state = state._replace(params=params, opt_state=opt_state, key=key,
                           update_step=state.update_step + 1)
    return state, {**metrics, "lr": lr, **episode_metrics(steps)}


# ---- binding ------------------------------------------------------------------------------
def init(network: nn.Module, config: Config, env: Any, env_params: Any, key: chex.PRNGKey,
         hp: HParams) -> PPOState:
    params, opt_state, env_state, obs, key = init_agent(network, config, env, env_params, key, hp)
    return PPOState(params, opt_state, env_state, obs, key, jnp.int32(0))


def make(config: Config, env: Any, env_params: Any, total_env_steps: int, *,
         network: nn.Module | None = None, loss: LossFn | None = None,
         grad_sync: GradSync | None = None) -> Algorithm:
    """Binds PPO to a vectorised env (see `jaxrl.envs.make_vec`) for `total_env_steps` per agent.

    `network`: any flax module whose `apply(params, obs)` returns `(distribution, value)`
    (default: `build_network`). `loss`: a `LossFn` in place of `loss` (default: `loss` as the
    config sets it). `grad_sync` transforms every gradient before the optimiser
    (data-parallel populations)."""
    batch_size = env.num_envs * config.num_steps
    num_updates = count_updates(
        config, batch_size, total_env_steps,
        f"env.num_envs x algo.num_steps = {env.num_envs} x {config.num_steps}",
        "env.num_envs/algo.num_steps")
    network = build_network(config, env, env_params) if network is None else network
    step_policy = functools.partial(policy, network)
    learn_fn = functools.partial(learn, network, config, num_updates, grad_sync=grad_sync, loss_fn=loss)
    return Algorithm(
        spec=AlgorithmSpec("ppo", batch_size, num_updates, config.num_steps),
        init=functools.partial(init, network, config, env, env_params),
        policy=step_policy, learn=learn_fn,
        update=make_update(step_policy, learn_fn, env, env_params, config.num_steps),
        act=functools.partial(act, network), default_hparams=config.hparams(),
        explain=functools.partial(explain, network),
        with_grad_sync=lambda sync: make(config, env, env_params, total_env_steps, network=network,
                                         loss=loss, grad_sync=sync))
