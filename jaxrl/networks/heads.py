"""Q-value heads composed by config: plain, dueling, C51 (distributional) and noisy layers.

One `QNetwork` covers every Rainbow combination; the flags only change which layers exist,
so any subset of {dueling, distributional, noisy} is the same code path.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl.networks.modules import NetworkConfig, make_torso


def scaled_noise(key: chex.PRNGKey, size: int) -> chex.Array:
    """f(x) = sign(x) sqrt|x| of standard normal draws, the factorised-noise transform."""
    x = jax.random.normal(key, (size,))
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


class NoisyDense(nn.Module):
    """Dense layer with factorised Gaussian noise on weights and biases (Fortunato et al., 2018).

    w = mu_w + sigma_w * (f(eps_out) outer f(eps_in)), b = mu_b + sigma_b * f(eps_out).
    One noise draw per call from the 'noise' RNG stream, shared by the whole batch;
    `noise=False` uses the means (greedy evaluation).
    """

    features: int
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, x: chex.Array, noise: bool = True) -> chex.Array:
        fan_in = x.shape[-1]
        bound = 1.0 / jnp.sqrt(fan_in)
        uniform = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
        constant = lambda key, shape: jnp.full(shape, self.sigma0 / jnp.sqrt(fan_in), jnp.float32)
        mu_w = self.param("mu_kernel", uniform, (fan_in, self.features))
        mu_b = self.param("mu_bias", uniform, (self.features,))
        sigma_w = self.param("sigma_kernel", constant, (fan_in, self.features))
        sigma_b = self.param("sigma_bias", constant, (self.features,))
        if not noise:
            return x @ mu_w + mu_b
        in_key, out_key = jax.random.split(self.make_rng("noise"))
        eps_in, eps_out = scaled_noise(in_key, fan_in), scaled_noise(out_key, self.features)
        kernel = mu_w + sigma_w * jnp.outer(eps_in, eps_out)
        return x @ kernel + mu_b + sigma_b * eps_out


def dueling_aggregate(value: chex.Array, advantages: chex.Array) -> chex.Array:
    """Q = V + A - mean_a A over the action axis -2 (value [..., 1, K], advantages [..., A, K])."""
    return value + advantages - advantages.mean(axis=-2, keepdims=True)


class QOutput(NamedTuple):
    q_values: chex.Array  # [..., actions]
    logits: chex.Array  # [..., actions, atoms]; atoms == 1 without a distributional head


class QNetwork(nn.Module):
    """Torso -> Q head. `num_atoms > 1` makes it C51 over `support`; `dueling` splits the head
    into value and advantage streams; `noisy` makes the head's layers `NoisyDense`. `encoder`,
    any flax module from observations to features, replaces the torso `config` describes."""

    config: NetworkConfig
    num_actions: int
    obs_ndim: int = 1
    dueling: bool = False
    noisy: bool = False
    sigma0: float = 0.5
    num_atoms: int = 1
    v_min: float = -10.0
    v_max: float = 10.0
    encoder: nn.Module | None = None

    @property
    def support(self) -> chex.Array:
        return jnp.linspace(self.v_min, self.v_max, self.num_atoms)

    def _layer(self, features: int, name: str):
        if self.noisy:
            return NoisyDense(features, self.sigma0, name=name)
        return nn.Dense(features, name=name)

    @nn.compact
    def __call__(self, obs: chex.Array, noise: bool = True) -> QOutput:
        torso = self.encoder if self.encoder is not None else make_torso(self.config, self.obs_ndim)
        features = torso(obs)
        call = (lambda layer, x: layer(x, noise)) if self.noisy else (lambda layer, x: layer(x))
        shape = features.shape[:-1] + (self.num_actions, self.num_atoms)
        advantages = call(self._layer(self.num_actions * self.num_atoms, "advantage"),
                          features).reshape(shape)
        if self.dueling:
            value = call(self._layer(self.num_atoms, "value"), features)
            logits = dueling_aggregate(value.reshape(shape[:-2] + (1, self.num_atoms)), advantages)
        else:
            logits = advantages
        if self.num_atoms == 1:
            return QOutput(logits[..., 0], logits)
        q_values = jnp.sum(jax.nn.softmax(logits) * self.support, axis=-1)
        return QOutput(q_values, logits)
