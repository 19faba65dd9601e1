"""Flax modules composed by config: torsos (MLP, CNNs), heads, and the actor-critic."""

from jaxrl.networks.distributions import Categorical
from jaxrl.networks.heads import NoisyDense, QNetwork, QOutput, dueling_aggregate, scaled_noise
from jaxrl.networks.modules import (
    ActorCritic, MinAtarCNN, MLP, NatureCNN, NetworkConfig, check_torso, make_torso, orthogonal,
)

__all__ = ["ActorCritic", "Categorical", "MLP", "MinAtarCNN", "NatureCNN", "NetworkConfig",
           "NoisyDense", "QNetwork", "QOutput", "check_torso", "dueling_aggregate", "make_torso",
           "orthogonal", "scaled_noise"]
