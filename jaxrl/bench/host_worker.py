"""One host-env measurement in a fresh process: `python -m jaxrl.bench.host_worker '<json spec>'`.

The spec names the env, the batch size, the systems to build (one, or raw EnvPool and jaxrl's
`EnvPoolBatch` together, which then take turns window by window), GymnasiumPool's worker
count, and the warm-up, window length and window count. The worker builds and resets each
batch (imports excluded from its setup seconds), takes the warm-up steps untimed, then times
each window of batched steps with random actions drawn beforehand, and prints one result line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from functools import partial
from typing import Any, Callable

from jaxrl.bench import common

Stepper = tuple[Callable[[Any], Any], Callable[[], None]]


def random_actions(space: Any, count: int, num_envs: int, seed: int) -> Any:
    """`count` batches of uniform random actions for a Discrete or Box space (gymnasium's or
    gymnax's), drawn up front so the timed loop measures the envs, not the random number generator."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if hasattr(space, "n"):  # Discrete
        return (getattr(space, "start", 0) + rng.integers(0, space.n, (count, num_envs))).astype(np.int32)
    low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
    return rng.uniform(low, high, (count, num_envs, *space.shape)).astype(space.dtype)


def preload(system: str) -> None:
    """Imports what `system` needs, so its setup seconds count building envs, not imports."""
    import gymnasium  # noqa: F401

    if system in ("envpool", "envpool-batch"):
        import envpool  # noqa: F401
    if system == "pool":
        import jaxrl.envs.host.gymnasium_pool  # noqa: F401
    if system == "envpool-batch":
        import jaxrl.envs.host.envpool_backend  # noqa: F401


def build(system: str, env_id: str, num_envs: int, workers: int, seed: int) -> Stepper:
    """Builds and resets one batch of envs; returns its step function and its close."""
    import gymnasium
    import numpy as np

    seeds = seed + np.arange(num_envs)
    if system in ("sync", "async"):
        vector = gymnasium.vector.SyncVectorEnv if system == "sync" else gymnasium.vector.AsyncVectorEnv
        env = vector([partial(gymnasium.make, env_id)] * num_envs)
        env.reset(seed=seeds.tolist())
        return env.step, env.close
    if system == "pool":
        from jaxrl.envs.host.gymnasium_pool import GymnasiumPool

        pool = GymnasiumPool(env_id, num_envs, num_workers=workers)
        pool.reset(seeds)
        return pool.step, pool.close
    if system == "envpool":
        import envpool

        env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, seed=seed)
        env.reset()
        return env.step, env.close
    from jaxrl.envs.host.envpool_backend import EnvPoolBatch

    batch = EnvPoolBatch(env_id, num_envs, seed=seed)
    batch.reset(seeds)
    return batch.step, batch.close


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Steady batched-step throughput of each system: warm-up untimed, then the timed windows,
    the systems taking turns window by window (a drifting load hits them alike)."""
    import gymnasium

    systems, steps, warmup, seed = spec["systems"], spec["window_steps"], spec["warmup"], spec.get("seed", 0)
    probe = gymnasium.make(spec["env"])
    actions = random_actions(probe.action_space, warmup + spec["windows"] * steps, spec["num_envs"], seed)
    probe.close()
    built, setup = {}, {}
    try:
        for system in systems:
            preload(system)
            start = time.perf_counter()
            built[system] = build(system, spec["env"], spec["num_envs"], spec.get("workers", 0), seed)
            setup[system] = time.perf_counter() - start
        for step, _ in built.values():
            for action in actions[:warmup]:
                step(action)
        windows: dict[str, list[float]] = {system: [] for system in systems}
        for w in range(spec["windows"]):
            for system, (step, _) in built.items():
                begin = time.perf_counter()
                for action in actions[warmup + w * steps: warmup + (w + 1) * steps]:
                    step(action)
                windows[system].append(steps * spec["num_envs"] / (time.perf_counter() - begin))
    finally:
        for _, close in built.values():
            close()
    return {system: {"window_sps": windows[system], "steady_sps": statistics.median(windows[system]),
                     "setup_seconds": setup[system]} for system in systems}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process."""
    argv = sys.argv[1:] if argv is None else argv
    common.emit(measure(json.loads(argv[0])))


if __name__ == "__main__":
    main()
