"""Pure RL math with no state: advantages, returns, losses, schedules."""

from jaxrl.rl.gae import gae_advantages
from jaxrl.rl.losses import approx_kl, clipped_surrogate_loss, value_loss
from jaxrl.rl.schedules import linear_decay

__all__ = ["gae_advantages", "clipped_surrogate_loss", "value_loss", "approx_kl", "linear_decay"]
