"""Flax modules composed by config: torsos (MLP, CNNs), heads, and the actor-critic."""

from jaxrl.networks.distributions import Categorical
from jaxrl.networks.modules import (
    ActorCritic, MinAtarCNN, MLP, NatureCNN, NetworkConfig, check_torso, make_torso, orthogonal,
)

__all__ = ["ActorCritic", "Categorical", "MLP", "MinAtarCNN", "NatureCNN", "NetworkConfig",
           "check_torso", "make_torso", "orthogonal"]
