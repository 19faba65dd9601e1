"""Brax physics envs (`brax/ant`, `brax/hopper`, ...) behind the gymnax 1.0 protocol.

Brax is an optional extra (`pip install "jaxrl[brax]"`) and slow to import, so the ids are
registered without it and brax is imported only when one is made. Only `brax.envs` is used,
behind `jaxrl.envs.adapters.from_brax`, and none of brax's wrappers: its AutoResetWrapper
restarts every episode from one cached first state, whereas the adapter resets to a state
freshly drawn with the step's key.

`terminated` is the env's own end (hopper falls, pendulum tips over, brax's `done`);
`truncated` is the time limit `params.max_steps_in_episode` (the `episode_length` kwarg),
counted in agent steps: with `action_repeat = k` an episode lasts at most
`k * episode_length` brax steps. Actions live in [-1, 1] (brax scales them to each
actuator's range) and are clipped into it. `backend` defaults to positional (swimmer:
generalized, the only one brax implements for it).
"""

from __future__ import annotations

import contextlib
import inspect
import io
from importlib.metadata import version
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrl.envs import env_kwargs
from jaxrl.envs.adapters import AdapterParams, BraxStyleEnv, from_brax
from jaxrl.errors import ConfigError

BRAX_ENVS = (
    "ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
    "inverted_double_pendulum", "pusher", "reacher", "swimmer", "walker2d",
)
BACKENDS = ("generalized", "positional", "spring", "mjx")
ONLY_BACKENDS = {"swimmer": ("generalized",)}  # brax implements swimmer for generalized only
DEFAULT_BACKEND = "positional"  # brax's fast and stable approximation (position-based dynamics)
INSTALL_HINT = 'pip install "jaxrl[brax]"'


def _import_brax_envs() -> Any:
    """`brax.envs`, importing it quietly (mujoco prints a note about its optional warp
    backend to stdout, which would interleave with the CLI's own output)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from brax import envs
    except ImportError as error:
        message = f"brax envs need brax, which failed to import ({error}): {INSTALL_HINT}"
        raise ConfigError(message) from None
    return envs


def _brax_kwargs(env_class: type, pipeline_class: type) -> set[str]:
    """The keyword arguments a brax env class accepts, besides `backend`."""
    params = inspect.signature(env_class.__init__).parameters
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):  # forwarded to PipelineEnv
        names |= set(inspect.signature(pipeline_class.__init__).parameters)
    return names - {"self", "sys", "backend"}


def _build(envs: Any, name: str, backend: str, action_repeat: int, params: AdapterParams,
           kwargs: dict[str, Any]) -> BraxStyleEnv:
    """The env, once it has traced a reset and a step (no compile): a bad kwarg value or a
    brax/jax mismatch fails here, readably, not at the first jit deep inside training
    (brax 0.14.2's swimmer fails so on jax >= 0.10)."""
    key = jax.random.PRNGKey(0)
    try:
        env, _ = from_brax(envs.get_environment(name, backend=backend, **kwargs), name=f"brax/{name}",
                           action_repeat=action_repeat, max_steps=params.max_steps_in_episode)
        _, state = jax.eval_shape(env.reset, key, params)
        jax.eval_shape(env.step, key, state, jnp.zeros(env.action_space(params).shape), params)
    except Exception as error:  # whatever brax raises, this env cannot run as configured
        first_line = (str(error).splitlines() or [""])[0]
        raise ConfigError(
            f"brax/{name} (backend {backend}, brax {version('brax')}, jax {jax.__version__}) "
            f"fails to build or trace a step: {type(error).__name__}: {first_line}") from error
    return env


def _check_positive_int(value: Any, key: str, env_id: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{env_id}: {key} must be a positive integer, got {value!r}")


def make_brax(name: str, backend: str | None = None, episode_length: int = 1000,
              action_repeat: int = 1, **kwargs: Any) -> tuple[BraxStyleEnv, AdapterParams]:
    """Build `brax/<name>`; other kwargs go to `brax.envs.get_environment`."""
    env_id = f"brax/{name}"
    valid = ONLY_BACKENDS.get(name, BACKENDS)
    if backend is None:
        backend = DEFAULT_BACKEND if DEFAULT_BACKEND in valid else valid[0]
    if backend not in valid:
        raise ConfigError(
            f"{env_id}: unsupported backend {backend!r}; valid backends: {', '.join(valid)}")
    _check_positive_int(episode_length, "episode_length", env_id)
    _check_positive_int(action_repeat, "action_repeat", env_id)
    envs = _import_brax_envs()
    accepted = _brax_kwargs(envs._envs[name], envs.PipelineEnv)  # _envs: brax's id -> class registry
    env_kwargs.refuse_unknown(kwargs, accepted | {"backend", "episode_length", "action_repeat"}, env_id)
    params = AdapterParams(max_steps_in_episode=episode_length)
    return _build(envs, name, backend, action_repeat, params, kwargs), params


def _factory(name: str) -> Callable[..., tuple[BraxStyleEnv, AdapterParams]]:
    def make(**kwargs: Any) -> tuple[BraxStyleEnv, AdapterParams]:
        return make_brax(name, **kwargs)
    return make


def register_brax(register: Callable[[str, Callable], None]) -> None:
    """Register every `brax/<name>` id; brax itself is imported only when one is made."""
    for name in BRAX_ENVS:
        register(f"brax/{name}", _factory(name))
