"""Shared test set-up: small compiled shapes, a persistent compile cache, and helpers."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Reuse compiled programs across test runs (CI sets the same folder between runs).
os.environ.setdefault("JAXRL_COMPILATION_CACHE", str(ROOT / ".jax_cache"))


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache():
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ["JAXRL_COMPILATION_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    yield


def run_python(code: str, devices: int = 1, timeout: int = 300):
    """Runs `code` in a fresh interpreter with `devices` CPU devices; returns the process."""
    import subprocess

    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
