"""Policy heads: features -> a categorical, Gaussian, tanh-Gaussian or Beta distribution.

`policy_spec` reads the env's action space and the config's `policy` key and refuses a
head that cannot act in that space; `policy_layers` and `distribution` build the head. PPO and GRPO
share both, so one algorithm file serves every action space.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from jaxrl.networks.distributions import Beta, Categorical, Gaussian, TanhGaussian
from jaxrl.networks.modules import make_torso, orthogonal

Distribution = Union[Categorical, Gaussian, TanhGaussian, Beta]
POLICIES = ("auto", "categorical", "gaussian", "tanh_gaussian", "beta")
CONTINUOUS = ("gaussian", "tanh_gaussian", "beta")
LOG_STD_KINDS = ("parameter", "state")  # state-independent parameter | output of the network
LOG_STD_RANGE = (-5.0, 2.0)  # a state-dependent log-std is clipped into this range


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """What a policy head outputs, fixed by the env's action space (hashable: a module field)."""

    kind: str  # categorical | gaussian | tanh_gaussian | beta
    size: int  # number of actions (categorical) or action dimensions
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    log_std: str = "parameter"
    init_log_std: float = 0.0


class PolicyConfigError(ValueError):
    """A policy head that cannot act in the env's action space (re-raised as ConfigError)."""


def policy_spec(action_space: Any, kind: str = "auto", log_std: str = "parameter",
                init_log_std: float = 0.0) -> PolicySpec:
    """The head for `action_space`; `kind="auto"` picks categorical or Gaussian by the space."""
    if isinstance(action_space, str):
        raise TypeError(f"policy_spec takes the action space first, then the kind: "
                        f"policy_spec(action_space, kind={action_space!r})")
    if kind not in POLICIES:
        raise PolicyConfigError(f"policy must be one of {', '.join(POLICIES)}, got {kind!r}")
    if log_std not in LOG_STD_KINDS:
        raise PolicyConfigError(f"log_std must be one of {', '.join(LOG_STD_KINDS)}, got {log_std!r}")
    discrete = isinstance(action_space, spaces.Discrete)
    if kind == "auto":
        kind = "categorical" if discrete else "gaussian"
    if discrete:
        if kind != "categorical":
            raise PolicyConfigError(
                f"policy={kind} needs a continuous (Box) action space, but this env has "
                f"Discrete({action_space.n}) actions; use policy: categorical")
        return PolicySpec("categorical", int(action_space.n))
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise PolicyConfigError(f"policies act in Discrete or 1-D Box action spaces, not {action_space}")
    if kind == "categorical":
        raise PolicyConfigError(
            f"policy=categorical needs a Discrete action space, but this env has continuous "
            f"Box(shape={tuple(action_space.shape)}) actions; use policy: gaussian, tanh_gaussian or beta")
    shape = tuple(action_space.shape)
    low = np.broadcast_to(np.asarray(action_space.low, np.float32), shape)
    high = np.broadcast_to(np.asarray(action_space.high, np.float32), shape)
    if kind != "gaussian" and not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise PolicyConfigError(f"policy={kind} scales actions into the action bounds, but this "
                                f"env's bounds are not finite; use policy: gaussian")
    return PolicySpec(kind, shape[0], tuple(low.tolist()), tuple(high.tolist()), log_std,
                      float(init_log_std))


def head_size(spec: PolicySpec) -> int:
    """Outputs of the policy layer: logits, means, or means and log-stds, or (alpha, beta)."""
    two_per_dim = spec.kind == "beta" or (spec.kind != "categorical" and spec.log_std == "state")
    return 2 * spec.size if two_per_dim else spec.size


def distribution(spec: PolicySpec, outputs: chex.Array, log_std_param: chex.Array | None) -> Distribution:
    """The distribution from the policy layer's `outputs` (and the free log-std parameter)."""
    if spec.kind == "categorical":
        return Categorical(outputs)
    low, high = jnp.asarray(spec.low), jnp.asarray(spec.high)
    if spec.kind == "beta":
        alpha, beta = jnp.split(jax.nn.softplus(outputs) + 1.0, 2, axis=-1)  # both > 1
        return Beta(alpha, beta, low, high)
    if spec.log_std == "state":
        mean, log_std = jnp.split(outputs, 2, axis=-1)
        log_std = jnp.clip(log_std + spec.init_log_std, *LOG_STD_RANGE)
    else:
        mean, log_std = outputs, jnp.broadcast_to(log_std_param, outputs.shape)
    return (Gaussian if spec.kind == "gaussian" else TanhGaussian)(mean, log_std, low, high)


def policy_layers(module: nn.Module, spec: PolicySpec) -> tuple[nn.Dense, chex.Array | None]:
    """The policy layer (starting near zero, orthogonal scale 0.01, so the first policy is
    near uniform or centred) and the free log-std, if any; call from a module's `setup`."""
    layer = nn.Dense(head_size(spec), kernel_init=orthogonal(0.01))
    if spec.kind in ("gaussian", "tanh_gaussian") and spec.log_std == "parameter":
        return layer, module.param("log_std", nn.initializers.constant(spec.init_log_std), (spec.size,))
    return layer, None


class PolicyHead(nn.Module):
    """Features -> the distribution `spec` names: the policy layer of `Actor` and `ActorCritic`,
    for a network of one's own (`ppo.make(..., network=...)`)."""

    spec: PolicySpec

    def setup(self):
        self.layer, self.log_std = policy_layers(self, self.spec)

    def __call__(self, features: chex.Array) -> Distribution:
        return distribution(self.spec, self.layer(features), self.log_std)


class ValueHead(nn.Module):
    """Features -> a scalar state value (orthogonal init, scale 1)."""

    @nn.compact
    def __call__(self, features: chex.Array) -> chex.Array:
        return nn.Dense(1, kernel_init=orthogonal(1.0))(features)[..., 0]


class Actor(nn.Module):
    """Torso -> policy head: the whole network of a critic-free method (GRPO). `encoder`, any
    flax module from observations to features, replaces the torso `config` describes."""

    config: Any  # NetworkConfig
    spec: PolicySpec
    obs_ndim: int = 1
    encoder: nn.Module | None = None

    def setup(self):
        self.torso = self.encoder if self.encoder is not None else make_torso(self.config, self.obs_ndim)
        self.policy_head, self.log_std = policy_layers(self, self.spec)

    def __call__(self, obs: chex.Array) -> Distribution:
        return distribution(self.spec, self.policy_head(self.torso(obs)), self.log_std)


class ActorCritic(nn.Module):
    """Policy and state value from one shared torso or two separate ones.

    `encoder` (and `critic_encoder`), any flax modules from observations to features, replace
    the torsos `config` describes; an `encoder` without `critic_encoder` serves both heads.
    `value` runs only the critic's path, for bootstrapping from final observations.
    """

    config: Any  # NetworkConfig
    spec: PolicySpec
    obs_ndim: int = 1
    encoder: nn.Module | None = None
    critic_encoder: nn.Module | None = None

    @property
    def shared(self) -> bool:
        return self.critic_encoder is None if self.encoder is not None else self.config.shared

    def setup(self):
        if self.encoder is not None:
            self.actor_torso = self.encoder
            self.critic_torso = self.encoder if self.critic_encoder is None else self.critic_encoder
        else:
            self.actor_torso = make_torso(self.config, self.obs_ndim)
            self.critic_torso = self.actor_torso if self.config.shared else make_torso(self.config, self.obs_ndim)
        self.policy_head, self.log_std = policy_layers(self, self.spec)
        self.value_head = nn.Dense(1, kernel_init=orthogonal(1.0))

    def __call__(self, obs: chex.Array) -> tuple[Distribution, chex.Array]:
        actor_features = self.actor_torso(obs)
        critic_features = actor_features if self.shared else self.critic_torso(obs)
        dist = distribution(self.spec, self.policy_head(actor_features), self.log_std)
        return dist, self.value_head(critic_features)[..., 0]

    def value(self, obs: chex.Array) -> chex.Array:
        return self.value_head(self.critic_torso(obs))[..., 0]
