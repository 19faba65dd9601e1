"""Experiments: the run folder, loggers, progress, and `train` that wires a config to a run."""

from jaxrl.experiment.train import build, train

__all__ = ["build", "train"]
