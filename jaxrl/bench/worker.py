"""One jaxrl measurement in a fresh process: `python -m jaxrl.bench.worker '<json spec>'`.

The spec names a config, overrides, seeds and env steps per seed, and optionally the number
of devices to train on (`devices`, as `jaxrl train --devices`) and a persistent compilation
cache folder (`compilation_cache`, as `jaxrl train --compilation-cache`; default off). The
worker trains it exactly as `jaxrl train` would (into a temporary run folder, progress bar
off) and prints one result line: steady SPS, compile seconds, greedy-eval returns per seed,
peak memory, and from the run folder each chunk's seconds, the checkpoint saves and sizes,
and the compilation cache's hits and misses.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jaxrl.bench import common

EVAL_KEYS = ("per_seed", "mean", "iqm", "iqm_ci_low", "iqm_ci_high", "min", "max", "episodes_per_seed")


def folder_bytes(path: Path) -> int:
    """Total size of the files below `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_folder_facts(run_dir: Path) -> dict[str, Any]:
    """What the run folder tells beyond the summary: seconds of each training chunk, each
    checkpoint save's seconds and the largest checkpoint's size on disk."""
    records = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines() if line]
    folders = [p for p in (run_dir / "checkpoints").iterdir() if p.is_dir() and p.name.isdigit()] \
        if (run_dir / "checkpoints").is_dir() else []
    chunks = [r for r in records if r["event"] == "chunk"]
    shares = ("env_wait_seconds", "device_wait_seconds", "host_seconds")
    split = {share: sum(c[share] for c in chunks[1:]) for share in shares} if chunks and shares[0] in chunks[0] else None
    return {
        "chunk_seconds": [r["seconds"] for r in chunks],
        "steady_time_split": split,  # host envs: the steady chunks' seconds by share
        "checkpoint_seconds": [r["seconds"] for r in records if r["event"] == "checkpoint"],
        "checkpoint_mib": max((folder_bytes(p) for p in folders), default=0) / 2**20,
    }


def raw_host_sps(config: Any, num_envs: int, seconds: float = 3.0) -> float:
    """Env steps per second of the config's host env alone: one vector env of `num_envs`
    copies (the population's envs) stepped in lockstep with random actions, no learner."""
    import numpy as np

    from jaxrl.bench.host_worker import random_actions
    from jaxrl.envs.host import open_host_env
    from jaxrl.experiment.assemble import build

    spec = build(config).host
    batches = random_actions(spec.action_space, 16, num_envs, seed=0)
    with open_host_env(spec, num_envs, num_workers=config.env.num_workers, timeout=config.env.step_timeout) as env:
        env.reset(np.arange(num_envs))
        for batch in batches:  # warm: threads started, first episodes under way
            env.step(batch)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            env.step(batches[steps % len(batches)])
            steps += 1
        return steps * num_envs / (time.perf_counter() - start)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Trains `spec["config"]` with its overrides, `seeds` and `steps`; returns what was measured."""
    from jaxrl.runtime import enable_compilation_cache

    enable_compilation_cache(spec.get("compilation_cache") or "off")
    import jax

    from jaxrl.config import load
    from jaxrl.experiment.train import train

    overrides = [*spec.get("overrides", ()), f"seeds={spec['seeds']}"]
    if spec.get("steps"):
        overrides.append(f"total_env_steps={spec['steps']}")
    config = load(spec["config"], overrides)
    devices = jax.devices()[: spec["devices"]] if spec.get("devices") else None
    raw: list[float] = []
    if spec.get("raw_env"):  # the simulator alone, before and after training (machines drift)
        from jaxrl.experiment.assemble import envs_per_member

        num_envs = spec["seeds"] * envs_per_member(config)
        raw.append(raw_host_sps(config, num_envs))
    with tempfile.TemporaryDirectory(prefix="jaxrl-bench-") as folder:
        summary = train(config, Path(folder) / "run", progress=False, devices=devices)
        facts = run_folder_facts(Path(folder) / "run")
    if raw:
        raw.append(raw_host_sps(config, num_envs))
        facts["raw_env_sps"] = sum(raw) / len(raw)
    final = summary.get("final_eval", {})
    cache = summary.get("compile_cache") or {}
    return {
        "steady_sps": summary["steady_sps"], "compile_seconds": summary["compile_seconds"],
        "wall_seconds": summary["wall_seconds"], "devices_used": summary["devices"],
        "env_steps_per_seed": summary["total_env_steps_per_seed"],
        "final_eval": {key: final.get(key) for key in EVAL_KEYS},
        "cache_hits": cache.get("hits"), "cache_misses": cache.get("misses"), **facts,
        **common.device_info(),
        "peak_rss_mib": common.peak_rss_mib(),
        "peak_device_mib": common.device_peak_mib(devices or jax.devices()),
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process."""
    argv = sys.argv[1:] if argv is None else argv
    common.emit(measure(json.loads(argv[0])))


if __name__ == "__main__":
    main()
