"""Process-level JAX settings that must be made before jax is first imported."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import MutableMapping

_INTERRUPTED = threading.Event()


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


def enable_compilation_cache(location: str | None = None) -> None:
    """Persistent XLA cache, so a second run of the same config skips most compiling: in
    `location` (--compilation-cache; `off` disables it), else $JAXRL_COMPILATION_CACHE, else
    ~/.cache/jaxrl/xla."""
    import jax

    cache = location or os.environ.get("JAXRL_COMPILATION_CACHE", str(Path.home() / ".cache" / "jaxrl" / "xla"))
    if cache.lower() in ("off", "none", "0"):
        jax.config.update("jax_enable_compilation_cache", False)
    elif cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program, so a rerun compiles nothing


def catch_interrupts() -> None:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt as usual and is also remembered, because
    Python drops the exception when the signal lands inside a garbage-collector callback
    (JAX registers one): `raise_if_interrupted` at the next chunk then stops the run anyway."""
    def on_sigint(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def raise_if_interrupted() -> None:
    """Raises KeyboardInterrupt when a Ctrl-C was caught (see `catch_interrupts`)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


class CompileCacheStats:
    """Counts persistent-compilation-cache hits and misses, and the compile seconds the hits
    saved (JAX reports each through `jax.monitoring`), while it is open."""

    HIT, MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
    SAVED = "/jax/compilation_cache/compile_time_saved_sec"

    def __init__(self) -> None:
        import jax

        self.hits, self.misses, self.seconds_saved = 0, 0, 0.0
        self._monitoring = jax.monitoring
        self._monitoring.register_event_listener(self._event)
        self._monitoring.register_event_duration_secs_listener(self._duration)

    def _event(self, event: str, **_: object) -> None:
        self.hits += event == self.HIT
        self.misses += event == self.MISS

    def _duration(self, event: str, seconds: float, **_: object) -> None:
        if event == self.SAVED:
            self.seconds_saved += max(0.0, seconds)

    def close(self) -> None:
        self._monitoring.unregister_event_listener(self._event)
        self._monitoring.unregister_event_duration_listener(self._duration)

    def as_dict(self) -> dict:
        import jax

        return {"dir": jax.config.jax_compilation_cache_dir, "hits": self.hits, "misses": self.misses,
                "seconds_saved": round(self.seconds_saved, 3)}
