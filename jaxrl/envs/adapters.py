"""Your own env behind the gymnax 1.0 protocol, with auto-reset and a time limit added.

`from_functions` adapts plain jittable functions, `from_brax` a brax-style env (`reset(rng)
-> State`, `step(state, action) -> State` with `.obs .reward .done`). Both return `(env,
params)` as `jaxrl.envs.make` does, so the pair goes to `make_vec`, or a factory returning it
to `jaxrl.envs.register`. The time limit `params.max_steps_in_episode` counts agent steps and
reports truncation (not on a step that terminates); after either end the next state is a
fresh reset drawn with the step's key, and `info["final_observation"]` keeps the last one.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl.envs.check import check_space
from jaxrl.errors import ConfigError

__all__ = ["AdaptedEnv", "AdapterParams", "AdapterState", "BraxStyleEnv", "from_brax", "from_functions"]

STEP_RETURNS = ("(obs, state, reward, done), optionally followed by truncated and/or an info dict")


@struct.dataclass
class AdapterState(environment.EnvState):
    inner: Any  # the adapted env's own state (a brax State for brax-style envs)


@struct.dataclass
class AdapterParams(environment.EnvParams):
    max_steps_in_episode: int = 1000  # the time limit, in agent steps


class AdaptedEnv(environment.Environment):
    """An env of `reset(key) -> (obs, state)` and `step(key, state, action)` functions that
    neither reset themselves nor stop at a time limit; `step` may return (obs, state, reward,
    done), (…, terminated, truncated), (…, terminated, info) or (…, terminated, truncated, info)."""

    def __init__(self, reset: Callable, step: Callable, observation_space: Any, action_space: Any,
                 max_steps: int = 1000, name: str = "AdaptedEnv"):
        super().__init__()
        self._name = name
        self._reset_fn, self._step_fn = reset, step
        self._observation_space = check_space(observation_space, f"{name}: observation_space")
        self._action_space = check_space(action_space, f"{name}: action_space")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"{name}: max_steps (the time limit) must be a positive integer, got {max_steps!r}")
        self._default_params = AdapterParams(max_steps_in_episode=max_steps)

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> AdapterParams:
        return self._default_params

    def observation_space(self, params: Any = None) -> Any:
        return self._observation_space

    def action_space(self, params: Any = None) -> Any:
        return self._action_space

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: chex.PRNGKey, params: Any = None) -> tuple[chex.Array, AdapterState]:
        out = self._reset_fn(key)
        if not isinstance(out, tuple) or len(out) != 2:
            raise ConfigError(f"{self._name}: reset(key) must return (obs, state), got {_count(out)}")
        obs, inner = out
        return obs, AdapterState(time=jnp.int32(0), inner=inner)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: chex.PRNGKey, state: AdapterState, action: Any, params: Any = None):
        """One step; at an episode's end, a fresh reset (the time limit is `params`')."""
        params = self.default_params if params is None else params
        step_key, reset_key = jax.random.split(key)
        obs, inner, reward, terminated, own_truncated, info = _six(
            self._step_fn(step_key, state.inner, action), self._name)
        time = state.time + 1
        terminated = jnp.asarray(terminated).astype(bool)
        limit = jnp.logical_or(own_truncated, time >= params.max_steps_in_episode)
        truncated = jnp.logical_and(limit, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        reset_obs, reset_state = self.reset(reset_key, params)
        stepped = AdapterState(time=time, inner=inner)
        next_state = jax.tree.map(lambda fresh, kept: jnp.where(done, fresh, kept), reset_state, stepped)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs}
        return (jnp.where(done, reset_obs, obs), next_state, jnp.asarray(reward, jnp.float32),
                terminated, truncated, info)


def _six(out: Any, name: str) -> tuple:
    """A step's outputs as (obs, state, reward, terminated, truncated, info)."""
    if not isinstance(out, tuple) or not 4 <= len(out) <= 6:
        raise ConfigError(f"{name}: step(key, state, action) must return {STEP_RETURNS}; got {_count(out)}")
    obs, inner, reward, terminated, *rest = out
    info = rest.pop() if rest and isinstance(rest[-1], dict) else {}
    if len(rest) > 1:
        raise ConfigError(f"{name}: step returned 6 values whose last is a {type(out[-1]).__name__}, "
                          f"not an info dict; return {STEP_RETURNS}")
    return obs, inner, reward, terminated, rest[0] if rest else False, info


def _count(out: Any) -> str:
    return f"{len(out)} values" if isinstance(out, tuple) else f"a {type(out).__name__}"


def from_functions(reset: Callable, step: Callable, observation_space: Any, action_space: Any, *,
                   max_steps: int = 1000, name: str = "FunctionEnv") -> tuple[AdaptedEnv, AdapterParams]:
    """`(env, params)` from jittable `reset(key) -> (obs, state)` and `step(key, state, action)
    -> (obs, state, reward, done[, truncated][, info])` and gymnax spaces; episodes end at
    `done` or after `max_steps` steps (truncated), then reset."""
    env = AdaptedEnv(reset, step, observation_space, action_space, max_steps=max_steps, name=name)
    return env, env.default_params


class BraxStyleEnv(AdaptedEnv):
    """A brax-style env: `reset(rng) -> State`, `step(state, action) -> State` (no key) with
    `.obs .reward .done`, and `action_size`. Actions live in [-1, 1] and are clipped into it;
    each agent step is `action_repeat` env steps with one action, rewards summed."""

    def __init__(self, brax_env: Any, name: str, action_repeat: int = 1, max_steps: int = 1000):
        self.brax_env, self.action_repeat = brax_env, action_repeat
        try:  # the shape alone (brax's `observation_size` runs an eager, slow reset)
            obs_shape = jax.eval_shape(brax_env.reset, jax.random.PRNGKey(0)).obs.shape
        except AttributeError as error:
            raise ConfigError(f"{name}: a brax-style env's reset(rng) must return a state with .obs, "
                              f".reward and .done ({error})") from error
        action_size = getattr(brax_env, "action_size", None)
        if not isinstance(action_size, int) or action_size < 1:
            raise ConfigError(f"{name}: a brax-style env needs action_size (the length of its action "
                              f"vector), got {action_size!r}")
        super().__init__(self._reset_brax, self._step_brax,
                         spaces.Box(-jnp.inf, jnp.inf, tuple(obs_shape), jnp.float32),
                         spaces.Box(-1.0, 1.0, (action_size,), jnp.float32), max_steps=max_steps, name=name)

    def _reset_brax(self, key: chex.PRNGKey) -> tuple[chex.Array, Any]:
        brax_state = self.brax_env.reset(key)
        return brax_state.obs, brax_state

    def _step_brax(self, key: chex.PRNGKey, brax_state: Any, action: chex.Array) -> tuple:
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        brax_state, reward = repeat_step(self.brax_env.step, brax_state, action, self.action_repeat)
        return brax_state.obs, brax_state, reward, brax_state.done > 0


def repeat_step(step: Callable, brax_state: Any, action: chex.Array, times: int) -> tuple[Any, chex.Array]:
    """`times` brax-style steps with one action, rewards summed; sub-steps after `done` change nothing."""

    def sub_step(carry, _):
        state, total = carry
        stopped = state.done > 0
        stepped = step(state, action)
        state = jax.tree.map(lambda old, new: jnp.where(stopped, old, new), state, stepped)
        return (state, total + jnp.where(stopped, 0.0, stepped.reward)), None

    (brax_state, reward), _ = jax.lax.scan(sub_step, (brax_state, jnp.float32(0.0)), length=times)
    return brax_state, reward


def from_brax(brax_env: Any, *, max_steps: int = 1000, action_repeat: int = 1,
              name: str | None = None) -> tuple[BraxStyleEnv, AdapterParams]:
    """`(env, params)` from a brax-style env (a `brax.envs.Env` without brax's episode or
    auto-reset wrappers, or your own with the same API); see `BraxStyleEnv`."""
    if isinstance(action_repeat, bool) or not isinstance(action_repeat, int) or action_repeat < 1:
        raise ConfigError(f"action_repeat must be a positive integer, got {action_repeat!r}")
    env = BraxStyleEnv(brax_env, name or type(brax_env).__name__, action_repeat, max_steps)
    return env, env.default_params
