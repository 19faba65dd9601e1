"""Pure RL math with no state: advantages, n-step returns, C51 projection, losses, schedules."""

from jaxrl.rl.distributional import categorical_projection
from jaxrl.rl.gae import gae_advantages
from jaxrl.rl.group import group_advantages, group_normalize, reward_to_go
from jaxrl.rl.losses import approx_kl, clipped_surrogate_loss, huber_loss, masked_mean, value_loss
from jaxrl.rl.nstep import NStepTargets, n_step_targets
from jaxrl.rl.schedules import linear_anneal, linear_decay

__all__ = ["gae_advantages", "group_advantages", "group_normalize", "reward_to_go", "n_step_targets", "NStepTargets", "categorical_projection",
           "clipped_surrogate_loss", "value_loss", "huber_loss", "approx_kl", "masked_mean", "linear_decay",
           "linear_anneal"]
