"""Algorithms, one module per family, each with a `Config` dataclass and `make(...)`."""

from types import ModuleType

from jaxrl.algos import dqn, grpo, ppo
from jaxrl.algos.base import Algorithm, AlgorithmSpec, Metrics

REGISTRY: dict[str, ModuleType] = {"dqn": dqn, "grpo": grpo, "ppo": ppo}

__all__ = ["Algorithm", "AlgorithmSpec", "Metrics", "REGISTRY", "dqn", "grpo", "ppo"]
