"""Non-jittable envs stepped on the host: gymnasium envs in worker processes, or EnvPool.

`resolve_backend` decides where an env id runs, `host_spec` reads its spaces (failing early
on a bad id or a missing extra), `open_host_env` starts a batch of envs. Both backends give
the same `HostStep`s; `jaxrl.host_loop` trains on them with the algorithms' own functions.
"""

from __future__ import annotations

from typing import Any

from jaxrl.errors import ConfigError

from jaxrl.envs.host.common import (
    EpisodeCounter, HostEnvError, HostEnvSpec, HostStep, HostVecEnv, JaxStandIn, UnknownHostEnvError,
)

BACKENDS = ("auto", "jax", "gymnasium", "envpool")

__all__ = ["BACKENDS", "EpisodeCounter", "HostEnvError", "HostEnvSpec", "HostStep", "HostVecEnv",
           "JaxStandIn", "UnknownHostEnvError", "host_spec", "open_host_env", "resolve_backend"]


def resolve_backend(env_id: str, backend: str, jittable_ids: list[str]) -> str:
    """`auto`: jittable when jaxrl or gymnax knows the id, otherwise gymnasium."""
    if backend != "auto":
        return backend
    return "jax" if env_id in jittable_ids else "gymnasium"


def host_spec(env_id: str, backend: str, kwargs: dict | None = None, frame_stack: int = 1) -> HostEnvSpec:
    """Spaces and time limit of a host env, from one env built in this process (`frame_stack`
    > 1: the gymnasium backend's stacked observations)."""
    if backend == "envpool":
        from jaxrl.envs.host.envpool_backend import envpool_spec

        if frame_stack > 1:
            raise ConfigError(f"env.frame_stack={frame_stack}: EnvPool stacks frames only for its Atari envs; "
                              f"use env.backend=gymnasium for {env_id}")
        return envpool_spec(env_id, kwargs)
    from jaxrl.envs.host.gymnasium_pool import gymnasium_spec

    if frame_stack > 1 and env_id.startswith("ALE/"):
        raise ConfigError(f"env.frame_stack={frame_stack}: {env_id} already stacks 4 frames (the Atari "
                          f"preprocessing); leave env.frame_stack at 1")
    return gymnasium_spec(env_id, kwargs, frame_stack)


def open_host_env(spec: HostEnvSpec, num_envs: int, *, num_workers: int = 0,
                  timeout: float = 60.0, seed: int = 0) -> Any:
    """A running batch of `num_envs` envs of `spec` (`seed`: EnvPool's base seed)."""
    if spec.backend == "envpool":
        from jaxrl.envs.host.envpool_backend import EnvPoolBatch

        return EnvPoolBatch(spec.env_id, num_envs, seed=seed, num_threads=num_workers,
                            kwargs=spec.kwargs)
    from jaxrl.envs.host.gymnasium_pool import GymnasiumPool

    return GymnasiumPool(spec.env_id, num_envs, num_workers, kwargs=spec.kwargs, timeout=timeout,
                         frame_stack=spec.frame_stack)
