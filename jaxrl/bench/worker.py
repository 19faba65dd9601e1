"""One jaxrl measurement in a fresh process: `python -m jaxrl.bench.worker '<json spec>'`.

The spec names a config, overrides, seeds and env steps per seed; the worker trains it exactly
as `jaxrl train` would (into a temporary run folder, progress bar off) and prints one result
line: steady SPS, compile seconds, greedy-eval returns per seed, and peak memory.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from jaxrl.bench import common


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Trains `spec["config"]` with its overrides, `seeds` and `steps`; returns what was measured."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    from jaxrl.config import load
    from jaxrl.experiment.train import train

    overrides = [*spec.get("overrides", ()), f"seeds={spec['seeds']}"]
    if spec.get("steps"):
        overrides.append(f"total_env_steps={spec['steps']}")
    config = load(spec["config"], overrides)
    with tempfile.TemporaryDirectory(prefix="jaxrl-bench-") as folder:
        summary = train(config, Path(folder) / "run", progress=False)
    final = summary.get("final_eval", {})
    return {
        "steady_sps": summary["steady_sps"], "compile_seconds": summary["compile_seconds"],
        "wall_seconds": summary["wall_seconds"], "devices_used": summary["devices"],
        "env_steps_per_seed": summary["total_env_steps_per_seed"],
        "final_eval": {key: final.get(key) for key in ("per_seed", "mean", "iqm", "iqm_ci_low",
                                                       "iqm_ci_high", "min", "max", "episodes_per_seed")},
        **common.device_info(),
        "peak_rss_mib": common.peak_rss_mib(),
        "peak_device_mib": common.device_peak_mib(jax.devices()),
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process."""
    argv = sys.argv[1:] if argv is None else argv
    common.emit(measure(json.loads(argv[0])))


if __name__ == "__main__":
    main()
