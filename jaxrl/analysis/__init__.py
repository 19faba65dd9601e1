"""Statistics over a population (IQM, bootstrap CIs) and plots of runs."""

from jaxrl.analysis.stats import aggregate, bootstrap_ci, iqm, iqm_rows

__all__ = ["aggregate", "bootstrap_ci", "iqm", "iqm_rows"]
