"""Torsos (MLP, Nature-DQN CNN, MinAtar CNN), chosen by `NetworkConfig`."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


ACTIVATIONS: dict[str, Callable] = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu,
                                    "silu": nn.silu}
TORSOS = ("mlp", "nature_cnn", "minatar_cnn")
# (features, kernel, stride) of each VALID convolution of the CNN torsos (also read by the
# torch export, which must rebuild them exactly)
CONV_LAYERS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "nature_cnn": ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
    "minatar_cnn": ((16, 3, 1),),
}


def orthogonal(scale: float = 1.0) -> Callable:
    """Orthogonal init that runs one seed at a time under `vmap`.

    jaxlib 0.10 can deadlock on small CPU machines when a vmapped init runs batched QR
    decompositions concurrently; `sequential_vmap` turns the batch into a loop with the
    same results.
    """
    base = nn.initializers.orthogonal(scale)

    def init(key: chex.PRNGKey, shape: Sequence[int], dtype=jnp.float32) -> chex.Array:
        one = jax.custom_batching.sequential_vmap(lambda k: base(k, shape, dtype))
        return one(key)

    return init


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Which torso, how wide, and whether actor and critic share it."""

    torso: str = "mlp"
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    shared: bool = False

    def __post_init__(self):
        if self.torso not in TORSOS:
            raise ValueError(f"network.torso must be one of {', '.join(TORSOS)}, got {self.torso!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"network.activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"network.hidden_sizes must be positive, got {list(self.hidden_sizes)}")


class MLP(nn.Module):
    """Dense layers on the flattened last `obs_ndim` axes of the input."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, x: chex.Array) -> chex.Array:
        x = x.reshape(x.shape[: x.ndim - self.obs_ndim] + (-1,)).astype(jnp.float32)
        for size in self.hidden_sizes:
            x = ACTIVATIONS[self.activation](nn.Dense(size, kernel_init=orthogonal(2**0.5))(x))
        return x


def _conv_stack(x: chex.Array, layers: Sequence[tuple[int, int, int]], act: Callable) -> chex.Array:
    """VALID convolutions as patch extraction + a dense layer, flattened at the end.

    Same function class as `nn.Conv`, but under `vmap` over a population each member's
    kernel becomes a batched matmul; a vmapped `nn.Conv` becomes a grouped convolution,
    which XLA's CPU backend runs over 100x slower.
    """
    lead = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:])
    for features, kernel, stride in layers:
        patches = jax.lax.conv_general_dilated_patches(
            x, (kernel, kernel), (stride, stride), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = act(nn.Dense(features, kernel_init=orthogonal(2**0.5))(patches))
    return x.reshape(lead + (-1,))


class NatureCNN(nn.Module):
    """The Nature-DQN torso for [.., H, W, C] images (Atari, CarRacing); uint8 is scaled to [0, 1]."""

    hidden_sizes: Sequence[int] = (512,)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: chex.Array) -> chex.Array:
        x = x / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
        x = _conv_stack(x, CONV_LAYERS["nature_cnn"], ACTIVATIONS[self.activation])
        return MLP(self.hidden_sizes, self.activation)(x)


class MinAtarCNN(nn.Module):
    """A small CNN for MinAtar's 10x10xC boolean grids: one 3x3 conv, then dense layers."""

    hidden_sizes: Sequence[int] = (128,)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: chex.Array) -> chex.Array:
        x = _conv_stack(x.astype(jnp.float32), CONV_LAYERS["minatar_cnn"], ACTIVATIONS[self.activation])
        return MLP(self.hidden_sizes, self.activation)(x)


def check_torso(config: NetworkConfig, obs_ndim: int) -> None:
    """Raises ValueError when the torso cannot read observations with `obs_ndim` axes."""
    if config.torso != "mlp" and obs_ndim != 3:
        raise ValueError(f"network.torso={config.torso} needs image observations [H, W, C], "
                         f"but this env's observations have {obs_ndim} axes; use torso: mlp")


def make_torso(config: NetworkConfig, obs_ndim: int) -> nn.Module:
    """The torso that `config` names; CNN torsos need image observations ([H, W, C])."""
    check_torso(config, obs_ndim)
    if config.torso == "mlp":
        return MLP(config.hidden_sizes, config.activation, obs_ndim)
    cls = NatureCNN if config.torso == "nature_cnn" else MinAtarCNN
    return cls(config.hidden_sizes, config.activation)
