"""Action distributions as small pytrees: sample, log-prob, entropy and mode, all jittable."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Categorical:
    """A categorical distribution over the last axis of `logits`."""

    logits: chex.Array

    @property
    def log_probs(self) -> chex.Array:
        return jax.nn.log_softmax(self.logits)

    def sample(self, key: chex.PRNGKey) -> chex.Array:
        return jax.random.categorical(key, self.logits)

    def log_prob(self, action: chex.Array) -> chex.Array:
        return jnp.take_along_axis(self.log_probs, action[..., None].astype(jnp.int32), -1)[..., 0]

    def entropy(self) -> chex.Array:
        log_p = self.log_probs
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    def mode(self) -> chex.Array:
        return jnp.argmax(self.logits, axis=-1)
