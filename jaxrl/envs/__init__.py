"""Jittable environments: the gymnax 1.0 protocol, an id registry, vectorisation and wrappers."""

from __future__ import annotations

from typing import Any

from jaxrl.envs.core import (
    Environment, EnvParams, EnvState, UnknownEnvError, VecEnv, Wrapper, describe_space, make,
    register, registered_ids, spaces,
)
from jaxrl.envs.wrappers import (
    EpisodeStatistics, FlattenObservation, NormalizeObservation, NormalizeReward, RunningMeanStd,
)
from jaxrl.envs.adapters import (
    AdaptedEnv, AdapterParams, AdapterState, BraxStyleEnv, from_brax, from_functions,
)
from jaxrl.envs.check import check_env, env_name
from jaxrl.errors import ConfigError

from jaxrl.envs.brax_env import register_brax
from jaxrl.envs.movie_rec import register_movie_rec
from jaxrl.envs.probes import register_probes

register_probes(register)
register_movie_rec(register)
register_brax(register)

__all__ = [
    "Environment", "EnvParams", "EnvState", "UnknownEnvError", "VecEnv", "Wrapper", "spaces",
    "make", "register", "registered_ids", "describe_space", "make_vec", "normalized", "EpisodeStatistics",
    "FlattenObservation", "NormalizeObservation", "NormalizeReward", "RunningMeanStd",
    "check_env", "from_functions", "from_brax", "AdaptedEnv", "BraxStyleEnv", "AdapterParams",
    "AdapterState",
]


def make_vec(
    env: str | Any,
    num_envs: int,
    *,
    env_params: Any = None,
    flatten_obs: bool = False,
    normalize_obs: bool = False,
    normalize_reward: bool = False,
    gamma: float = 0.99,
    update_stats: bool = True,
    env_kwargs: dict | None = None,
    group_size: int = 1,
) -> tuple[Any, Any]:
    """A batched env ready for training: `num_envs` copies with episode statistics first.

    `env` is an id for `make` or a single env object following the gymnax 1.0 protocol
    (then `env_params` defaults to its `default_params`); either is checked against the
    protocol once (`check_env`, one abstract step). `update_stats=False` freezes the
    normalisation statistics, as evaluation wants. `group_size` > 1 makes groups of copies
    that share their randomness (see `VecEnv`), as GRPO wants.
    """
    if isinstance(env, str):
        env, default_params = make(env, **(env_kwargs or {}))
        env_params = default_params if env_params is None else env_params
    elif env_params is None:
        if not hasattr(env, "default_params"):
            raise ConfigError(f"{env_name(env)} has no default_params; pass env_params= to make_vec "
                              f"or give the env a default_params property")
        env_params = env.default_params
    check_env(env, env_params)
    vec: Any = EpisodeStatistics(VecEnv(env, num_envs, group_size))
    if flatten_obs:
        vec = FlattenObservation(vec)
    return normalized(vec, normalize_obs, normalize_reward, gamma, update_stats), env_params


def normalized(vec: Any, normalize_obs: bool, normalize_reward: bool, gamma: float = 0.99,
               update_stats: bool = True) -> Any:
    """`vec` with the normalisation wrappers asked for, in `make_vec`'s order (jittable envs
    and the host loop's stand-in alike, so both keep the same statistics in the same state)."""
    if normalize_obs:
        vec = NormalizeObservation(vec, update_stats=update_stats)
    if normalize_reward:
        vec = NormalizeReward(vec, gamma=gamma, update_stats=update_stats)
    return vec
