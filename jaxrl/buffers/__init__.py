"""Replay buffers as pure init/add/sample/update functions over pytree states (vmappable)."""

from jaxrl.buffers import sum_tree
from jaxrl.buffers.replay import (
    ReplayState, Sample, add, empty_like, importance_weights, init, is_prioritized, sample_prioritized,
    sample_uniform, update_priorities,
)

__all__ = ["sum_tree", "ReplayState", "Sample", "init", "is_prioritized", "add", "empty_like",
           "sample_uniform", "sample_prioritized", "update_priorities", "importance_weights"]
