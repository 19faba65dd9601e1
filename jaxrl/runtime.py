"""Process-level JAX settings that must be made before jax is first imported."""

from __future__ import annotations

import os
from typing import MutableMapping


def cpu_defaults(devices: int | None = None, environ: MutableMapping[str, str] = os.environ) -> None:
    """Splits the CPU into one XLA device per core (or `devices`) and runs each device's
    kernels on its own thread, unless the user already chose.

    One device per core lets the population's shards run in parallel; with Eigen's own
    thread pool switched off, those shards stop competing for the same cores.
    """
    flags = environ.get("XLA_FLAGS", "")
    if "JAX_NUM_CPU_DEVICES" not in environ and "device_count" not in flags:
        environ["JAX_NUM_CPU_DEVICES"] = str(devices or os.cpu_count() or 1)
    if "xla_cpu_multi_thread_eigen" not in flags:
        environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
