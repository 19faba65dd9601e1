"""Flax modules composed by config: torsos (MLP, CNNs), Q heads, policy heads, actor-critic."""

from jaxrl.networks.distributions import Beta, Categorical, Gaussian, TanhGaussian
from jaxrl.networks.heads import NoisyDense, QNetwork, QOutput, dueling_aggregate, scaled_noise
from jaxrl.networks.modules import (
    MinAtarCNN, MLP, NatureCNN, NetworkConfig, check_torso, make_torso, orthogonal,
)
from jaxrl.networks.policy import (
    Actor, ActorCritic, Distribution, PolicyConfigError, PolicyHead, PolicySpec, ValueHead, distribution,
    head_size, policy_layers, policy_spec,
)

__all__ = ["Actor", "ActorCritic", "Beta", "Categorical", "Distribution", "Gaussian", "MLP", "MinAtarCNN",
           "NatureCNN", "NetworkConfig", "NoisyDense", "PolicyConfigError", "PolicyHead", "PolicySpec",
           "QNetwork", "QOutput", "TanhGaussian", "ValueHead", "check_torso", "distribution",
           "dueling_aggregate", "head_size", "make_torso", "orthogonal", "policy_layers", "policy_spec",
           "scaled_noise"]
