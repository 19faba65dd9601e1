"""One rollout contract for jittable and host envs.

An algorithm supplies a per-step `policy(state, obs, key, hp) -> (env_action, record)` and a
`learn(state, steps, hp)`; this module turns the pair into a whole `update` over a jittable
env with `lax.scan`, and `jaxrl.host_loop` runs the same pair over envs in worker processes.
Both drivers spend keys alike (`step_keys`) and hand `learn` the same time-major `Steps`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import chex
import jax
import jax.numpy as jnp


class Steps(NamedTuple):
    """One update's rollout, time-major [T, num_envs, ...]: what the env returned plus the
    `record` the policy kept for each step (raw action, log-prob, value, ...)."""

    obs: chex.Array  # the observation each action was chosen from
    record: Any
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    final_obs: chex.Array  # observation the step reached, before auto-reset
    episode_done: chex.Array
    episode_return: chex.Array
    episode_length: chex.Array


class RolloutState(Protocol):
    """What a rollout reads and writes of an algorithm's state (a NamedTuple)."""

    env_state: Any
    obs: chex.Array  # the observation the next step acts on
    key: chex.PRNGKey

    def _replace(self, **fields: Any) -> "RolloutState": ...


def step_keys(key: chex.PRNGKey) -> tuple[chex.PRNGKey, chex.PRNGKey, chex.PRNGKey]:
    """(carried key, the policy's key, the env step's key) for one env step."""
    key, act_key, env_key = jax.random.split(key, 3)
    return key, act_key, env_key


def reset_key(key: chex.PRNGKey) -> tuple[chex.PRNGKey, chex.PRNGKey]:
    """(carried key, the key of the fresh resets) before a resetting rollout (GRPO's groups)."""
    key, env_key = jax.random.split(key)
    return key, env_key


def episode_metrics(steps: Steps) -> dict[str, chex.Array]:
    """Sums over the episodes that ended in the rollout, as `jaxrl.algos.base` asks."""
    done = steps.episode_done.astype(jnp.float32)
    return {"episodes": done.sum(), "episode_return": (steps.episode_return * done).sum(),
            "episode_length": (steps.episode_length * done).sum()}


def rollout(policy: Callable, env: Any, env_params: Any, state: RolloutState, hp: Any,
            num_steps: int, resets: bool = False) -> tuple[RolloutState, Steps]:
    """`num_steps` steps of every env copy with `policy`, continuing from the state's env
    (or, with `resets`, from fresh resets that keep the wrappers' running statistics)."""
    key, obs, env_state = state.key, state.obs, state.env_state
    if resets:
        key, env_key = reset_key(key)
        obs, env_state = env.reset_from(env_key, env_params, env_state)

    def step(carry, _):
        env_state, obs, key = carry
        key, act_key, env_key = step_keys(key)
        env_action, record = policy(state, obs, act_key, hp)
        next_obs, env_state, reward, terminated, truncated, info = env.step(
            env_key, env_state, env_action, env_params)
        out = Steps(obs, record, reward, terminated, truncated, info["final_observation"],
                    info["episode_done"], info["episode_return"], info["episode_length"])
        return (env_state, next_obs, key), out

    (env_state, obs, key), steps = jax.lax.scan(step, (env_state, obs, key), length=num_steps)
    return state._replace(env_state=env_state, obs=obs, key=key), steps


def make_update(policy: Callable, learn: Callable, env: Any, env_params: Any, num_steps: int,
                resets: bool = False) -> Callable:
    """`update(state, hp) -> (state, metrics)`: one rollout on a jittable env, then `learn`."""

    def update(state: Any, hp: Any) -> tuple[Any, dict[str, chex.Array]]:
        state, steps = rollout(policy, env, env_params, state, hp, num_steps, resets)
        return learn(state, steps, hp)

    return update
