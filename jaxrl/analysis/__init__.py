"""Statistics over a population (IQM, bootstrap CIs) and plots of runs."""

from jaxrl.analysis.stats import aggregate, bootstrap_ci, iqm

__all__ = ["aggregate", "bootstrap_ci", "iqm"]
