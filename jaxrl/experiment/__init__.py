"""Experiments: assembling a run from a config (`assemble.build`), and the commands that run
it — `train` (run folder, loggers, progress, checkpoints), evaluation, sweeps."""

from jaxrl.experiment.assemble import build
from jaxrl.experiment.train import train

__all__ = ["build", "train"]
