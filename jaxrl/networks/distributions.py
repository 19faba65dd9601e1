"""Action distributions as small pytrees: sample, log-prob, entropy, mode, all jittable.

Every distribution samples a *raw* action, which the learner stores and scores with
`log_prob`, and maps it to the env's action with `to_env`. For a categorical or Beta
policy the two are the same up to scaling; for a tanh-squashed Gaussian the raw action is
the pre-squash sample, so log-probs never invert `tanh` (which loses precision near ±1).

Continuous distributions are diagonal: log-probs, entropies and KL divergences sum over the
last axis. `sample(seed=key)` and `kl_divergence(other)` read as in distrax.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import betaln, digamma

# Gauss-Hermite (probabilists') nodes and weights for E[f(u)], u ~ N(0, 1): exact for
# polynomials up to degree 63, and well below 1e-4 error for the tanh-squash Jacobian.
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(32)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()
_HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)


def _check_same_class(dist: object, other: object) -> None:
    """KL divergences here are closed forms between two members of one family only."""
    if type(other) is not type(dist):
        raise TypeError(f"{type(dist).__name__}.kl_divergence needs another {type(dist).__name__}, "
                        f"got {type(other).__name__}")


@struct.dataclass
class Categorical:
    """A categorical distribution over the last axis of `logits`; raw action = env action."""

    logits: chex.Array

    @property
    def log_probs(self) -> chex.Array:
        return jax.nn.log_softmax(self.logits)

    def sample(self, seed: chex.PRNGKey) -> chex.Array:
        return jax.random.categorical(seed, self.logits)

    def log_prob(self, action: chex.Array) -> chex.Array:
        return jnp.take_along_axis(self.log_probs, action[..., None].astype(jnp.int32), -1)[..., 0]

    def entropy(self) -> chex.Array:
        log_p = self.log_probs
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    def mode(self) -> chex.Array:
        return jnp.argmax(self.logits, axis=-1)

    def kl_divergence(self, other: Categorical) -> chex.Array:
        """KL(self || other) = sum_a p(a) (log p(a) - log q(a)), over the last axis."""
        _check_same_class(self, other)
        log_p = self.log_probs
        return jnp.sum(jnp.exp(log_p) * (log_p - other.log_probs), axis=-1)

    def to_env(self, action: chex.Array) -> chex.Array:
        return action


def gaussian_log_prob(x: chex.Array, mean: chex.Array, log_std: chex.Array) -> chex.Array:
    """Elementwise log N(x; mean, exp(log_std)^2)."""
    z = (x - mean) * jnp.exp(-log_std)
    return -0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi)


def gaussian_kl(mean_p: chex.Array, log_std_p: chex.Array, mean_q: chex.Array,
                log_std_q: chex.Array) -> chex.Array:
    """Elementwise KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)), in closed form."""
    variance_ratio = jnp.exp(2.0 * (log_std_p - log_std_q))
    scaled_gap = (mean_p - mean_q) * jnp.exp(-log_std_q)
    return 0.5 * (variance_ratio + scaled_gap**2 - 1.0) - (log_std_p - log_std_q)


def log_one_minus_tanh_sq(u: chex.Array) -> chex.Array:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|."""
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


@struct.dataclass
class Gaussian:
    """Diagonal Gaussian whose samples the env receives *clipped* to [low, high].

    The log-prob is that of the unclipped sample (the raw action): clipping is part of the
    env, as in PPO's reference implementations, so the gradient sees the true density.
    """

    mean: chex.Array
    log_std: chex.Array
    low: chex.Array
    high: chex.Array

    def sample(self, seed: chex.PRNGKey) -> chex.Array:
        return self.mean + jnp.exp(self.log_std) * jax.random.normal(seed, self.mean.shape)

    def log_prob(self, raw: chex.Array) -> chex.Array:
        return gaussian_log_prob(raw, self.mean, self.log_std).sum(-1)

    def entropy(self) -> chex.Array:
        return jnp.sum(_HALF_LOG_2PI_E + self.log_std * jnp.ones_like(self.mean), axis=-1)

    def mode(self) -> chex.Array:
        return self.mean

    def kl_divergence(self, other: Gaussian) -> chex.Array:
        """KL(self || other) between the raw (unclipped) Gaussians, summed over dimensions."""
        _check_same_class(self, other)
        return gaussian_kl(self.mean, self.log_std, other.mean, other.log_std).sum(-1)

    def to_env(self, raw: chex.Array) -> chex.Array:
        return jnp.clip(raw, self.low, self.high)


@struct.dataclass
class TanhGaussian:
    """Diagonal Gaussian squashed by tanh and scaled to [low, high].

    a = low + (tanh(u) + 1) (high - low) / 2 with u ~ N(mean, std); the raw action is u and
    log p(a) = log N(u) - sum log(1 - tanh(u)^2) - sum log((high - low) / 2). The entropy
    has no closed form: it is the Gaussian's plus E[log |da/du|], by Gauss-Hermite quadrature.
    """

    mean: chex.Array
    log_std: chex.Array
    low: chex.Array
    high: chex.Array

    @property
    def _log_half_range(self) -> chex.Array:
        return jnp.log((self.high - self.low) / 2.0)

    def sample(self, seed: chex.PRNGKey) -> chex.Array:
        return self.mean + jnp.exp(self.log_std) * jax.random.normal(seed, self.mean.shape)

    def log_prob(self, raw: chex.Array) -> chex.Array:
        per_dim = (gaussian_log_prob(raw, self.mean, self.log_std)
                   - log_one_minus_tanh_sq(raw) - self._log_half_range)
        return per_dim.sum(-1)

    def entropy(self) -> chex.Array:
        u = self.mean[..., None] + jnp.exp(self.log_std)[..., None] * _GH_NODES
        expected_log_jacobian = jnp.sum(log_one_minus_tanh_sq(u) * _GH_WEIGHTS, axis=-1)
        per_dim = _HALF_LOG_2PI_E + self.log_std + expected_log_jacobian + self._log_half_range
        return per_dim.sum(-1)

    def mode(self) -> chex.Array:
        return self.mean  # its image, the squashed mean, is the greedy action

    def kl_divergence(self, other: TanhGaussian) -> chex.Array:
        """KL(self || other): that of the underlying Gaussians, since KL is unchanged by the
        same invertible squash on both sides (both must have the same bounds)."""
        _check_same_class(self, other)
        return gaussian_kl(self.mean, self.log_std, other.mean, other.log_std).sum(-1)

    def to_env(self, raw: chex.Array) -> chex.Array:
        return self.low + (jnp.tanh(raw) + 1.0) * (self.high - self.low) / 2.0


@struct.dataclass
class Beta:
    """Independent Beta(alpha, beta) per action dimension, scaled from [0, 1] to [low, high].

    The raw action is x in (0, 1); log p(a) = log Beta(x; alpha, beta) - sum log(high - low).
    With alpha, beta > 1 the density is unimodal and zero at the bounds (Chou et al., 2017).
    """

    alpha: chex.Array
    beta: chex.Array
    low: chex.Array
    high: chex.Array

    EPS = 1e-6  # keeps samples off the bounds, where log(x) or log(1 - x) is -inf

    def sample(self, seed: chex.PRNGKey) -> chex.Array:
        x = jax.random.beta(seed, self.alpha, self.beta)
        return jnp.clip(x, self.EPS, 1.0 - self.EPS)

    def log_prob(self, raw: chex.Array) -> chex.Array:
        x = jnp.clip(raw, self.EPS, 1.0 - self.EPS)
        per_dim = ((self.alpha - 1.0) * jnp.log(x) + (self.beta - 1.0) * jnp.log1p(-x)
                   - betaln(self.alpha, self.beta) - jnp.log(self.high - self.low))
        return per_dim.sum(-1)

    def entropy(self) -> chex.Array:
        a, b = self.alpha, self.beta
        per_dim = (betaln(a, b) - (a - 1.0) * digamma(a) - (b - 1.0) * digamma(b)
                   + (a + b - 2.0) * digamma(a + b) + jnp.log(self.high - self.low))
        return per_dim.sum(-1)

    def mode(self) -> chex.Array:
        return self.alpha / (self.alpha + self.beta)  # the mean: smoother than the argmax

    def kl_divergence(self, other: Beta) -> chex.Array:
        """KL(self || other) in closed form (unchanged by the scaling when both share bounds):
        log B(a2, b2) - log B(a1, b1) + (a1 - a2) psi(a1) + (b1 - b2) psi(b1)
        + (a2 - a1 + b2 - b1) psi(a1 + b1), summed over dimensions."""
        _check_same_class(self, other)
        a1, b1, a2, b2 = self.alpha, self.beta, other.alpha, other.beta
        per_dim = (betaln(a2, b2) - betaln(a1, b1) + (a1 - a2) * digamma(a1) + (b1 - b2) * digamma(b1)
                   + (a2 - a1 + b2 - b1) * digamma(a1 + b1))
        return per_dim.sum(-1)

    def to_env(self, raw: chex.Array) -> chex.Array:
        return self.low + raw * (self.high - self.low)
