"""The environment protocol, the id registry and the vectorised view that algorithms consume.

A single environment follows the gymnax 1.0 API::

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

with auto-reset on `terminated | truncated` and `info["final_observation"]` holding the
observation the episode ended on (needed to bootstrap at time-limit truncations).
Algorithms see a `VecEnv`: the same API over a leading axis of `num_envs` copies.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from gymnax.environments import spaces
from gymnax.environments.environment import Environment, EnvParams, EnvState

from jaxrl.envs import env_kwargs
from jaxrl.errors import ConfigError

__all__ = [
    "Environment", "EnvParams", "EnvState", "spaces", "VecEnv", "Wrapper",
    "make", "register", "registered_ids", "UnknownEnvError",
]

EnvFactory = Callable[..., tuple[Any, Any]]
_REGISTRY: dict[str, EnvFactory] = {}


class UnknownEnvError(ConfigError):
    """An env id that no registry knows."""


def register(env_id: str, factory: EnvFactory) -> None:
    """Make `make(env_id, **kwargs)` call `factory(**kwargs) -> (env, params)`.

    `make` checks the kwargs against `factory`'s signature (one that forwards to a class with
    `functools.wraps(cls, updated=())` is read as the class's); a factory taking `**kwargs` checks its own."""
    if env_id in _REGISTRY:
        raise ValueError(f"env id {env_id!r} is already registered")
    _REGISTRY[env_id] = factory


def _gymnax_ids() -> list[str]:
    import gymnax

    return list(gymnax.registered_envs)


def registered_ids() -> list[str]:
    """Every id `make` serves: gymnax's own and those registered here."""
    return sorted(set(_gymnax_ids()) | set(_REGISTRY))


def make(env_id: str, **kwargs: Any) -> tuple[Any, Any]:
    """Build a single jittable env and its default params from an id.

    Ids registered with `register` come first, then every gymnax id
    (`CartPole-v1`, `Breakout-MinAtar`, ...).
    """
    if env_id in _REGISTRY:
        factory = _REGISTRY[env_id]
        env_kwargs.check(kwargs, factory, f"jaxrl {env_id}")
        return env_kwargs.construct(lambda: factory(**kwargs), kwargs, f"jaxrl {env_id}")
    if env_id in _gymnax_ids():
        import gymnax

        # gymnax >= 1.0 keeps id -> class in `_registry`; without it the constructor still checks
        env_class = getattr(gymnax.registration, "_registry", {}).get(env_id)
        env_kwargs.check(kwargs, env_class, f"gymnax {env_id}")
        return env_kwargs.construct(lambda: gymnax.make(env_id, **kwargs), kwargs, f"gymnax {env_id}")
    raise UnknownEnvError(unknown_id_message(env_id))


def unknown_id_message(env_id: str) -> str:
    """`unknown env id ...` with the closest of the known ids as suggestions."""
    known = registered_ids()
    if not isinstance(env_id, str) or not env_id.strip():
        return (f"env.id is empty (got {env_id!r}); give an env id such as CartPole-v1 "
                f"(`jaxrl envs` lists the {len(known)} jittable ids)")
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown env id {env_id!r}.{hint} `jaxrl envs` lists the {len(known)} known ids."


class Wrapper:
    """Base for wrappers: forwards every attribute it does not define to the inner env."""

    def __init__(self, env: Any):
        self.env = env

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not set yet (during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, key: chex.PRNGKey, params: Any) -> tuple[chex.Array, Any]:
        return self.env.reset(key, params)

    def step(self, key, state, action, params):
        return self.env.step(key, state, action, params)

    def reset_from(self, key: chex.PRNGKey, params: Any, like_state: Any):
        """Reset, keeping any running statistics that `like_state` holds (see wrappers)."""
        return self.env.reset_from(key, params, like_state)


class VecEnv(Wrapper):
    """`num_envs` copies of a single env, stepped together with `vmap`.

    Spaces are those of one copy; observations, rewards and flags gain a leading
    `num_envs` axis. With `group_size=1` each copy gets its own key, so copies never share
    randomness. With `group_size=G` (GRPO) the copies form `num_envs / G` groups of G
    consecutive copies that share every key, for reset and step alike: a group starts
    from one state and its members can differ only through their actions.
    """

    def __init__(self, env: Any, num_envs: int, group_size: int = 1):
        super().__init__(env)
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if group_size < 1 or num_envs % group_size:
            raise ValueError(f"group_size={group_size} must divide num_envs={num_envs}")
        self.num_envs, self.group_size = num_envs, group_size
        self._reset = jax.vmap(env.reset, in_axes=(0, None))
        self._step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def _keys(self, key: chex.PRNGKey) -> chex.Array:
        keys = jax.random.split(key, self.num_envs // self.group_size)
        return keys if self.group_size == 1 else jnp.repeat(keys, self.group_size, axis=0)

    def reset(self, key: chex.PRNGKey, params: Any) -> tuple[chex.Array, Any]:
        return self._reset(self._keys(key), params)

    def step(self, key, state, action, params):
        return self._step(self._keys(key), state, action, params)

    def reset_from(self, key, params, like_state):
        return self.reset(key, params)  # single envs hold no statistics


def describe_space(space: Any) -> str:
    """A one-line human description of a gymnax space, for error messages."""
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})"
    if isinstance(space, spaces.Box):
        return f"Box(shape={tuple(space.shape)})"
    return type(space).__name__
