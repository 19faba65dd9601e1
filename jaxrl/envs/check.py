"""The env protocol, checked once by `make_vec` with one abstract reset and step
(`jax.eval_shape`: traced, nothing computed).

What the vectorised wrappers and the algorithms rely on, and nothing more: `reset(key, params)
-> (obs, state)` with `obs` one array of `observation_space(params).shape`; `step(key, state,
action, params) -> (obs, state, reward, terminated, truncated, info)` with scalar `reward`,
bool scalar flags, the state of `reset`'s shapes and dtypes (a `lax.scan` carries it) and
`info["final_observation"]` shaped like `obs` (truncated episodes bootstrap from it); gymnax
`Box` or `Discrete` spaces. An env on gymnax's own `step` also needs `state.time` and
`params.max_steps_in_episode`, which that `step` reads for the time limit.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from jaxrl.errors import ConfigError

__all__ = ["check_env", "check_space", "env_name"]

ADAPT = ("subclass gymnax's Environment (jaxrl.envs.Environment) or adapt yours with "
         "jaxrl.envs.from_functions / from_brax")
METHODS = {"reset": "(key, params)", "step": "(key, state, action, params)",
           "observation_space": "(params)", "action_space": "(params)"}


def env_name(env: Any) -> str:
    """The env's name for messages: its `name`, else its class name."""
    name = getattr(env, "name", None)
    return name if isinstance(name, str) and name else type(env).__name__


def check_env(env: Any, params: Any) -> None:
    """Raises one `ConfigError` naming the first piece of the protocol `env` lacks and how to
    add it; warns when its time limit is a single step."""
    name = env_name(env)
    for method, signature in METHODS.items():
        if not callable(getattr(env, method, None)):
            raise ConfigError(f"{name} has no {method}{signature}; a jittable env needs reset, step, "
                              f"observation_space and action_space: {ADAPT}")
    obs_space = check_space(_call(env.observation_space, params, f"{name}.observation_space"),
                            f"{name}.observation_space(params)")
    action_space = check_space(_call(env.action_space, params, f"{name}.action_space"),
                               f"{name}.action_space(params)")
    obs, state = _abstract_reset(env, params, name)
    if tuple(obs.shape) != tuple(obs_space.shape):
        raise ConfigError(f"{name}.reset's observation has shape {tuple(obs.shape)} but "
                          f"observation_space(params).shape is {tuple(obs_space.shape)}; make them agree")
    _check_gymnax_time_limit(env, state, params, name)
    action = jax.ShapeDtypeStruct(action_space.shape, _action_dtype(action_space))
    out = _trace(env.step, (jax.random.PRNGKey(0), state, action, params), f"{name}.step", METHODS["step"])
    _check_step(out, obs, state, name)
    warn_one_step(_time_limit(params), name)


def check_space(space: Any, where: str) -> Any:
    """`space` if it is a gymnax `Box` or `Discrete`, else one `ConfigError` naming `where`."""
    if not isinstance(space, (spaces.Box, spaces.Discrete)):
        kind = f"{type(space).__module__}.{type(space).__name__}"
        raise ConfigError(f"{where} returned a {kind}; return a gymnax space "
                          f"(gymnax.environments.spaces.Box or Discrete, also jaxrl.envs.spaces)")
    return space


def warn_one_step(limit: int | None, name: str) -> None:
    """Warns that a time limit of one step cuts every episode after its first step."""
    if limit == 1:
        warnings.warn(f"{name}'s time limit is 1 step (max_steps_in_episode=1, the default of gymnax's "
                      f"EnvParams): every episode is cut after one step; set max_steps_in_episode in its "
                      f"params (default_params or env_params=), or end one-step episodes with "
                      f"terminated=True under a longer limit", UserWarning, stacklevel=3)


def _call(method: Callable, params: Any, where: str) -> Any:
    try:
        return method(params)
    except Exception as error:  # whatever it raises, make_vec cannot read the space
        raise ConfigError(f"{where}(params) fails: {_first_line(error)}; it must take the env params "
                          f"and return a gymnax space") from error


def _trace(fn: Callable, args: tuple, where: str, signature: str) -> Any:
    """`jax.eval_shape(fn, *args)`; a failure to trace becomes one line (our own errors pass)."""
    try:
        return jax.eval_shape(fn, *args)
    except ConfigError:
        raise
    except Exception as error:  # whatever it raises, the env cannot run under jit
        raise ConfigError(f"{where}{signature} fails to trace: {_first_line(error)}; it must be a "
                          f"jittable function of {signature}") from error


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def _abstract_reset(env: Any, params: Any, name: str) -> tuple[Any, Any]:
    out = _trace(env.reset, (jax.random.PRNGKey(0), params), f"{name}.reset", METHODS["reset"])
    if not isinstance(out, tuple) or len(out) != 2:
        raise ConfigError(f"{name}.reset must return (obs, state), got {_count(out)}")
    obs, state = out
    if not isinstance(obs, jax.ShapeDtypeStruct):
        raise ConfigError(f"{name}.reset's observation is a {type(obs).__name__}; return one array "
                          f"(concatenate the parts of a dict or tuple observation)")
    return obs, state


def _check_gymnax_time_limit(env: Any, state: Any, params: Any, name: str) -> None:
    """gymnax's own `step` reads `state.time` and `params.max_steps_in_episode` (is_truncated)."""
    if not isinstance(env, environment.Environment):
        return
    if type(env).step is not environment.Environment.step:
        return
    if type(env).is_truncated is not environment.Environment.is_truncated:
        return
    if not hasattr(state, "time"):
        raise ConfigError(f"{name}'s state {type(state).__name__} has no `time` field, which gymnax's "
                          f"Environment.step reads for the time limit (is_truncated); derive the state "
                          f"from jaxrl.envs.EnvState, or override is_truncated")
    if not hasattr(params, "max_steps_in_episode"):
        raise ConfigError(f"{name}'s params {type(params).__name__} have no `max_steps_in_episode`, "
                          f"which gymnax's Environment.step reads for the time limit; derive them from "
                          f"jaxrl.envs.EnvParams, or override is_truncated")


def _check_step(out: Any, obs: Any, state: Any, name: str) -> None:
    if not isinstance(out, tuple) or len(out) != 6:
        raise ConfigError(f"{name}.step must return 6 values (obs, state, reward, terminated, truncated, "
                          f"info) as in gymnax 1.0, got {_count(out)}; gymnax < 1.0 returned done: "
                          f"upgrade, or adapt plain functions with jaxrl.envs.from_functions")
    next_obs, next_state, reward, terminated, truncated, info = out
    if not _same(next_obs, obs):
        raise ConfigError(f"{name}.step's observation is {_describe(next_obs)} but reset's is "
                          f"{_describe(obs)}; return the same shape and dtype from both")
    _check_state(state, next_state, name)
    if getattr(reward, "shape", None) != ():
        raise ConfigError(f"{name}.step's reward is {_describe(reward)}; return one scalar per env (shape ())")
    for flag, value in (("terminated", terminated), ("truncated", truncated)):
        if getattr(value, "shape", None) != () or value.dtype != jnp.bool_:
            raise ConfigError(f"{name}.step's {flag} is {_describe(value)}; return a bool scalar "
                              f"(e.g. jnp.asarray({flag}, bool))")
    _check_info(info, next_obs, name)


def _check_state(state: Any, next_state: Any, name: str) -> None:
    """The state `step` returns must be reset's pytree with the same shapes and dtypes."""
    if jax.tree.structure(state) != jax.tree.structure(next_state):
        raise ConfigError(f"{name}.step returns a state of another structure than reset's "
                          f"({type(next_state).__name__} vs {type(state).__name__}); return the same "
                          f"pytree from both (a lax.scan carries it)")
    paths = jax.tree_util.tree_flatten_with_path(state)[0]
    for (path, before), after in zip(paths, jax.tree.leaves(next_state)):
        if not _same(before, after):
            raise ConfigError(f"{name}.step returns state{jax.tree_util.keystr(path)} as {_describe(after)} "
                              f"but reset returns {_describe(before)}; keep each state leaf's shape and "
                              f"dtype (a lax.scan carries the state)")


def _check_info(info: Any, obs: Any, name: str) -> None:
    if not isinstance(info, dict):
        raise ConfigError(f"{name}.step's info is a {type(info).__name__}; return a dict")
    if "final_observation" not in info:
        raise ConfigError(f"{name}.step's info has no 'final_observation'; add the observation the "
                          f"episode ended on, before the auto-reset (truncated episodes bootstrap from "
                          f"it), or implement step_env and let gymnax's Environment.step add it")
    if not _same(info["final_observation"], obs):
        raise ConfigError(f"{name}.step's info['final_observation'] is {_describe(info['final_observation'])} "
                          f"but its observation is {_describe(obs)}; they must match")


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, jax.ShapeDtypeStruct) and isinstance(b, jax.ShapeDtypeStruct)
            and a.shape == b.shape and a.dtype == b.dtype)


def _describe(x: Any) -> str:
    if isinstance(x, jax.ShapeDtypeStruct):
        return f"{jnp.dtype(x.dtype).name}{list(x.shape)}"
    return f"a {type(x).__name__}"


def _count(out: Any) -> str:
    return f"{len(out)} values" if isinstance(out, tuple) else f"a {type(out).__name__}"


def _action_dtype(space: Any) -> Any:
    """The dtype the policies act with: the space's integers for Discrete, float32 for Box."""
    return space.dtype if isinstance(space, spaces.Discrete) else jnp.float32


def _time_limit(params: Any) -> int | None:
    """`params.max_steps_in_episode` when it is a concrete whole number, else None."""
    try:
        return int(getattr(params, "max_steps_in_episode"))
    except (AttributeError, TypeError, ValueError):
        return None
