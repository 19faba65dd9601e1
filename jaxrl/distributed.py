"""Several processes, one population: JAX's own multi-controller runtime (`jax.distributed`).

`jaxrl train --distributed` starts it before anything touches a device. Without an address,
JAX detects the cluster itself (SLURM, Open MPI, Kubernetes); by hand, every process gets
the same `--coordinator HOST:PORT` and `--num-processes N` and its own `--process-id`. The
population's mesh then spans every device of every process, each process computes its own
shards, metrics are gathered, checkpoints are written together into the one run folder, and
only process 0 writes the rest of it.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

from jaxrl.errors import ConfigError


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Returns once `host:port` accepts connections; a ConfigError after `timeout` seconds
    (JAX itself would abort the process without a Python error)."""
    host, port = parse_coordinator(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"could not reach the coordinator at {address} within {timeout:g} s ({error}); "
                    f"start process 0 (it hosts the coordinator) with the same --coordinator, "
                    f"check the address and firewall, or raise --distributed-timeout") from None
            time.sleep(0.2)


# More processes than this is no cluster JAX runs on; a typo (an extra digit or two) is likelier.
MAX_PROCESSES = 65_536
MAX_TIMEOUT = 86_400.0  # a day


def parse_coordinator(address: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` (`[::1]:PORT` for an IPv6 address): the port a whole number
    in 1..65535 and the host one this machine can resolve; else one ConfigError line."""
    host, _, port = str(address).strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--coordinator must be HOST:PORT with PORT a whole number in 1..65535 "
                          f"(process 0's address, e.g. node0:12345), got {address!r}")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise ConfigError(f"--coordinator host {host!r} does not resolve ({error}); give process 0's "
                          f"hostname or IP address as every process can reach it") from None
    return host, int(port)


def check_settings(coordinator: str | None, num_processes: int | None, process_id: int | None,
                   timeout: float) -> None:
    """Every `--distributed` setting checked before jax.distributed sees it (JAX itself would
    abort the process, or wait for a coordinator that can never come)."""
    if not (isinstance(timeout, (int, float)) and 0 < timeout <= MAX_TIMEOUT):
        raise ConfigError(f"--distributed-timeout must be positive seconds, at most {MAX_TIMEOUT:g} "
                          f"(a day), got {timeout}")
    explicit = (coordinator, num_processes, process_id)
    if any(x is not None for x in explicit) and not all(x is not None for x in explicit):
        raise ConfigError("--coordinator, --num-processes and --process-id go together "
                          "(or give none of them on a cluster JAX detects: SLURM, Open MPI, Kubernetes)")
    if coordinator is None:
        return
    if not 1 <= num_processes <= MAX_PROCESSES:
        raise ConfigError(f"--num-processes must lie in 1..{MAX_PROCESSES:,} (every process of the run, "
                          f"the same number for all), got {num_processes:,}")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must lie in 0..{num_processes - 1} for --num-processes "
                          f"{num_processes}, got {process_id}")
    parse_coordinator(coordinator)


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               timeout: float) -> None:
    """Starts jax.distributed: from explicit settings, or detected from the cluster. The
    settings are checked first (`check_settings`), so a bad one is one line, not an abort."""
    check_settings(coordinator, num_processes, process_id, timeout)
    import jax

    if coordinator is None:
        try:
            jax.distributed.initialize(initialization_timeout=max(1, int(timeout)))
        except (ValueError, RuntimeError) as error:
            raise ConfigError(f"--distributed found no cluster to join ({error}); outside SLURM, "
                              f"Open MPI or Kubernetes give --coordinator HOST:PORT, "
                              f"--num-processes N and --process-id I to every process") from None
        return
    if process_id != 0:
        wait_for_coordinator(coordinator, timeout)
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=max(1, int(timeout)))


def process_count() -> int:
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """Whether this process writes the run folder (process 0; the only one without --distributed)."""
    import jax

    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process gets here (a no-op for one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def scratch_dir() -> Path:
    """Where a non-primary process puts the run-folder files only process 0 keeps."""
    import jax

    return Path(tempfile.mkdtemp(prefix=f"jaxrl-process{jax.process_index()}-"))
