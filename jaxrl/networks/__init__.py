"""Flax modules composed by config: torsos (MLP, CNNs), Q heads, policy heads, actor-critic."""

from jaxrl.networks.distributions import Beta, Categorical, Gaussian, TanhGaussian
from jaxrl.networks.heads import NoisyDense, QNetwork, QOutput, dueling_aggregate, scaled_noise
from jaxrl.networks.modules import (
    MinAtarCNN, MLP, NatureCNN, NetworkConfig, check_torso, make_torso, orthogonal,
)
from jaxrl.networks.policy import (
    Actor, ActorCritic, PolicyConfigError, PolicySpec, distribution, policy_spec,
)

__all__ = ["Actor", "ActorCritic", "Beta", "Categorical", "Gaussian", "MLP", "MinAtarCNN",
           "NatureCNN", "NetworkConfig", "NoisyDense", "PolicyConfigError", "distribution",
           "PolicySpec", "QNetwork", "QOutput", "TanhGaussian", "check_torso",
           "dueling_aggregate", "make_torso", "orthogonal", "policy_spec", "scaled_noise"]
