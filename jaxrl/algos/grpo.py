"""Group Relative Policy Optimisation: PPO's clipped objective with no value network.

Each update resets `env.num_envs` (B) start states and runs a group of `group_size` (G)
rollouts from each: the G copies of a group share every env key (see `VecEnv`), so they
start from the same state and differ only through their sampled actions. A rollout runs
its first episode for up to `horizon` steps; later steps are padding, masked out. Each
step's advantage is its rollout's discounted return normalised within the group (or, with
`per_step_advantages`, its reward-to-go normalised over the group at that step). Then
epochs of minibatch steps on the clipped surrogate, plus an optional KL penalty towards a
reference policy that is refreshed to the current one every `ref_refresh_every` updates.

Read top to bottom: config -> state -> `policy` (one step's decision) -> `loss` ->
`minibatches` (group advantages, reference log-probs) -> `learn` -> `make`, which binds them
to an env and a network into an `Algorithm`. Any flax module returning a distribution may
stand in for the default `Actor`.
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
from jaxrl.evaluation import episode_limit
from jaxrl.networks import Actor
from jaxrl.rl import approx_kl, clipped_surrogate_loss, group_advantages, masked_mean
from jaxrl.rollout import Steps, episode_metrics, make_update


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
    obs: chex.Array  # the last rollout's last observation (unused: every update resets)
    key: chex.PRNGKey
    update_step: chex.Array


class Record(NamedTuple):
    """What learning keeps of each step's decision, time-major in `Steps.record`."""

    action: chex.Array  # the raw action (see `jaxrl.networks.distributions`)
    log_prob: chex.Array


class Minibatch(NamedTuple):
    obs: chex.Array
    action: chex.Array
    log_prob: chex.Array
    ref_log_prob: chex.Array
    advantage: chex.Array
    alive: chex.Array  # still in the rollout's first episode at this step


def build_network(config: Config, env: Any, env_params: Any) -> Actor:
    """The policy network (no critic) for this env's observations and action space."""
    return Actor(config.network, *resolve_policy(config, env, env_params))


# ---- acting -------------------------------------------------------------------------------
def policy(network: nn.Module, state: GRPOState, obs: chex.Array, key: chex.PRNGKey,
           hp: HParams) -> tuple[chex.Array, Record]:
    """One step's sampled env actions, and what learning needs of them."""
    dist = network.apply(state.params, obs)
    action = dist.sample(seed=key)
    return dist.to_env(action), Record(action, dist.log_prob(action))


def act(network: nn.Module, params: Any, obs: chex.Array, key: chex.PRNGKey,
        deterministic: bool | chex.Array = False) -> chex.Array:
    dist = network.apply(params, obs)
    return dist.to_env(either(deterministic, dist.mode, lambda: dist.sample(seed=key)))


def explain(network: nn.Module, params: Any, obs: chex.Array) -> dict[str, chex.Array]:
    return describe_policy(network.apply(params, obs))


# ---- learning -----------------------------------------------------------------------------
def first_episode(steps: Steps) -> tuple[chex.Array, Steps]:
    """`alive` (no episode of the copy ended before this step) and the rollout with only the
    first episodes' ends: a GRPO rollout is one episode, later steps are padding."""
    done = steps.episode_done
    alive = jnp.cumsum(done, axis=0) - done == 0
    return alive, steps._replace(episode_done=done & alive)


def loss(network: nn.Module, params: Any, minibatch: Minibatch, hp: HParams
         ) -> tuple[chex.Array, dict[str, chex.Array]]:
    """Clipped surrogate + kl_coef x KL(policy || reference) - ent_coef x entropy, over the
    steps still in their first episode, and its parts."""
    dist = network.apply(params, minibatch.obs)
    log_prob = dist.log_prob(minibatch.action)
    policy_loss, extras = clipped_surrogate_loss(
        log_prob, minibatch.log_prob, minibatch.advantage, clip_eps=hp.clip_eps, mask=minibatch.alive,
        return_extras=True)
    kl = approx_kl(minibatch.ref_log_prob, log_prob, minibatch.alive)
    entropy = masked_mean(dist.entropy(), minibatch.alive)
    total = policy_loss + hp.kl_coef * kl - hp.ent_coef * entropy
    return total, {"policy_loss": policy_loss, "kl_to_reference": kl, "entropy": entropy,
                   "approx_kl": approx_kl(log_prob, minibatch.log_prob, minibatch.alive),
                   "clip_fraction": extras["clip_fraction"]}


def minibatches(network: nn.Module, config: Config, ref_params: Any, steps: Steps, alive: chex.Array,
                hp: HParams) -> Minibatch:
    """Group-relative advantages and the reference policy's log-probs, flattened to [T * B * G]."""
    horizon, copies = steps.reward.shape[:2]
    grouped = lambda x: x.reshape((horizon, copies // config.group_size, config.group_size))  # noqa: E731
    advantages = group_advantages(grouped(steps.reward), grouped(alive), hp.gamma,
                                  config.per_step_advantages).reshape(steps.reward.shape)
    record = steps.record
    ref_log_prob = network.apply(ref_params, steps.obs).log_prob(record.action)
    batch = Minibatch(steps.obs, record.action, record.log_prob, ref_log_prob, advantages, alive)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)


def learn(network: nn.Module, config: Config, num_updates: int, state: GRPOState, steps: Steps,
          hp: HParams, grad_sync: GradSync | None = None, loss_fn: LossFn | None = None
          ) -> tuple[GRPOState, Metrics]:
    """Group advantages, then `num_epochs` passes of shuffled minibatch gradient steps on
    `loss_fn` (default `loss`); the reference policy becomes the current one every
    `ref_refresh_every` updates."""
    alive, steps = first_episode(steps)
    refresh = state.update_step % config.ref_refresh_every == 0
    ref_params = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                              state.params, state.ref_params)
    batch = minibatches(network, config, ref_params, steps, alive, hp)
    lr = learning_rate(hp.lr, state.update_step, num_updates, config.anneal_lr)
    key, epoch_key = jax.random.split(state.key)
    params, opt_state, metrics = minibatch_epochs(
        state.params, state.opt_state, batch, epoch_key, functools.partial(loss_fn or loss, network, hp=hp),
        optimizer(hp.max_grad_norm, lr, config.adam_eps), config.num_epochs,
        config.num_minibatches, grad_sync)
    state = state._replace(params=params, ref_params=ref_params, opt_state=opt_state, key=key,
                           update_step=state.update_step + 1)
    return state, {**metrics, "lr": lr, "alive_fraction": alive.mean(), **episode_metrics(steps)}


# ---- binding ------------------------------------------------------------------------------
def init(network: nn.Module, config: Config, env: Any, env_params: Any, key: chex.PRNGKey,
         hp: HParams) -> GRPOState:
    params, opt_state, env_state, obs, key = init_agent(network, config, env, env_params, key, hp)
    return GRPOState(params, params, opt_state, env_state, obs, key, jnp.int32(0))


def make(config: Config, env: Any, env_params: Any, total_env_steps: int, *,
         network: nn.Module | None = None, loss: LossFn | None = None,
         grad_sync: GradSync | None = None) -> Algorithm:
    """Binds GRPO to a grouped vectorised env (`make_vec(..., num_envs=B * G, group_size=G)`).

    `network`: any flax module whose `apply(params, obs)` returns a distribution (default:
    `build_network`); `loss`: a `LossFn` in place of `loss`; `grad_sync` transforms every gradient before the optimiser
    (data-parallel populations)."""
    group_size = config.group_size
    if getattr(env, "group_size", 1) != group_size:
        raise ConfigError(f"GRPO needs an env built with group_size={group_size} "
                          f"(jaxrl.envs.make_vec(..., num_envs=B * G, group_size=G))")
    horizon = config.horizon or episode_limit(env_params)
    batch_size = env.num_envs * horizon
    num_updates = count_updates(
        config, batch_size, total_env_steps,
        f"B x G x horizon = {env.num_envs // group_size} x {group_size} x {horizon}",
        "env.num_envs, algo.group_size or algo.horizon")
    network = build_network(config, env, env_params) if network is None else network
    step_policy = functools.partial(policy, network)
    learn_fn = functools.partial(learn, network, config, num_updates, grad_sync=grad_sync, loss_fn=loss)
    return Algorithm(
        spec=AlgorithmSpec("grpo", batch_size, num_updates, horizon, reset_groups=group_size),
        init=functools.partial(init, network, config, env, env_params),
        policy=step_policy, learn=learn_fn,
        update=make_update(step_policy, learn_fn, env, env_params, horizon, resets=True),
        act=functools.partial(act, network), default_hparams=config.hparams(),
        explain=functools.partial(explain, network),
        with_grad_sync=lambda sync: make(config, env, env_params, total_env_steps, network=network,
                                         loss=loss, grad_sync=sync))
