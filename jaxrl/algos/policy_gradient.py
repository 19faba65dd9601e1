"""What PPO and GRPO share: the policy/optimiser part of their config, the policy head for
an env's action space, the optimiser, `--trace` explanations, and epochs of shuffled
minibatch gradient steps."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrl.algos.base import GradSync, updates_in_budget
from jaxrl.errors import ConfigError
from jaxrl.networks import NetworkConfig, PolicyConfigError, PolicySpec, check_torso, policy_spec
from jaxrl.networks.distributions import Categorical
from jaxrl.networks.policy import LOG_STD_KINDS, POLICIES


class LossFn(Protocol):
    """A PPO or GRPO loss: `make(..., loss=)` takes any function of this shape."""

    def __call__(self, network: Any, params: Any, minibatch: Any, hp: Any
                 ) -> tuple[chex.Array, dict[str, chex.Array]]:
        """The scalar to minimise on one minibatch (the algorithm's `Minibatch`), and named
        parts to report."""


@dataclasses.dataclass(frozen=True)
class PolicyGradientConfig:
    """Keys common to PPO and GRPO (see their `Config`s for the rest)."""

    name: str = ""  # set by each algorithm's Config; first, so dumped configs start with it
    lr: float = 2.5e-4
    gamma: float = 0.99
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    num_epochs: int = 4
    num_minibatches: int = 4
    anneal_lr: bool = True
    adam_eps: float = 1e-5
    # auto (categorical for Discrete actions, gaussian for Box) | categorical | gaussian
    # (samples clipped to the bounds by the env) | tanh_gaussian | beta
    policy: str = "auto"
    log_std: str = "parameter"  # Gaussian log-std: parameter (state-independent) | state
    init_log_std: float = 0.0
    network: NetworkConfig = NetworkConfig()

    def __post_init__(self):
        for key in ("lr", "num_epochs", "num_minibatches", "adam_eps", "max_grad_norm"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"algo.{key} must be positive, got {getattr(self, key)}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"algo.gamma must lie in [0, 1], got {self.gamma}")
        for key in ("clip_eps", "ent_coef"):
            if getattr(self, key) < 0:
                raise ConfigError(f"algo.{key} must be >= 0, got {getattr(self, key)}")
        if self.policy not in POLICIES:
            raise ConfigError(f"algo.policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.log_std not in LOG_STD_KINDS:
            raise ConfigError(f"algo.log_std must be one of {', '.join(LOG_STD_KINDS)}, "
                              f"got {self.log_std!r}")


def resolve_policy(config: PolicyGradientConfig, env: Any, env_params: Any) -> tuple[PolicySpec, int]:
    """The policy head for this env's action space and the observation rank, or a ConfigError."""
    obs_ndim = len(env.observation_space(env_params).shape)
    try:
        check_torso(config.network, obs_ndim)
        spec = policy_spec(env.action_space(env_params), kind=config.policy, log_std=config.log_std,
                           init_log_std=config.init_log_std)
    except (ValueError, PolicyConfigError) as error:
        raise ConfigError(f"algo.{error}") from None
    return spec, obs_ndim


def count_updates(config: PolicyGradientConfig, batch_size: int, total_env_steps: int,
                  batch_terms: str, shrink: str) -> int:
    """Updates in the run, refusing a batch the minibatches do not divide or a budget below one
    batch; `batch_terms` spells the batch's factors and `shrink` the keys that make it smaller."""
    if batch_size % config.num_minibatches:
        raise ConfigError(f"algo.num_minibatches={config.num_minibatches} must divide the batch of "
                          f"{batch_terms} = {batch_size} steps")
    return updates_in_budget(total_env_steps, batch_size, f"shrink {shrink}")


def init_agent(network: Any, config: PolicyGradientConfig, env: Any, env_params: Any,
               key: chex.PRNGKey, hp: Any) -> tuple[Any, Any, Any, chex.Array, chex.PRNGKey]:
    """(params, optimiser state, env state, first observations, the agent's key) of a fresh agent."""
    net_key, env_key, key = jax.random.split(key, 3)
    obs, env_state = env.reset(env_key, env_params)
    params = network.init(net_key, obs)
    opt_state = optimizer(hp.max_grad_norm, hp.lr, config.adam_eps).init(params)
    return params, opt_state, env_state, obs, key


def optimizer(max_grad_norm: chex.Array, lr: chex.Array, adam_eps: float) -> optax.GradientTransformation:
    """Adam with global-norm clipping; `lr` may be a traced (annealed, per-member) value."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                       optax.scale_by_adam(eps=adam_eps), optax.scale(-lr))


def describe_policy(dist: Any) -> dict[str, chex.Array]:
    """Per-observation numbers that explain a decision, for `jaxrl eval --trace`."""
    if isinstance(dist, Categorical):
        return {"action_probs": jax.nn.softmax(dist.logits)}
    out = {"greedy_action": dist.to_env(dist.mode())}
    if hasattr(dist, "alpha"):
        return {**out, "alpha": dist.alpha, "beta": dist.beta}
    return {**out, "std": jnp.exp(dist.log_std)}


def minibatch_epochs(params: Any, opt_state: Any, data: Any, key: chex.PRNGKey,
                     loss_fn: Callable, tx: optax.GradientTransformation, num_epochs: int,
                     num_minibatches: int, grad_sync: GradSync | None = None
                     ) -> tuple[Any, Any, dict[str, chex.Array]]:
    """`num_epochs` passes over `data` (leaves [N, ...]) in shuffled minibatches, one gradient
    step each; returns new params, optimiser state and the metrics averaged over all steps.
    `grad_sync` (data-parallel populations) transforms every step's gradients before `tx`."""
    size = jax.tree.leaves(data)[0].shape[0]
    minibatch_size = size // num_minibatches

    def step(carry, minibatch):
        params, opt_state = carry
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, minibatch)
        if grad_sync is not None:
            grads = grad_sync(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def epoch(carry, epoch_key):
        order = jax.random.permutation(epoch_key, size)
        shuffled = jax.tree.map(
            lambda x: x[order].reshape((num_minibatches, minibatch_size) + x.shape[1:]), data)
        return jax.lax.scan(step, carry, shuffled)

    (params, opt_state), metrics = jax.lax.scan(
        epoch, (params, opt_state), jax.random.split(key, num_epochs))
    return params, opt_state, {name: value.mean() for name, value in metrics.items()}
