"""Greedy (or stochastic) evaluation of one agent on fresh episodes, jittable and vmappable."""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from jaxrl.algos.base import Algorithm


def episode_limit(env_params: Any, default: int = 1000) -> int:
    """The env's own time limit when it declares one, else `default`."""
    return int(getattr(env_params, "max_steps_in_episode", default))


def make_evaluator(algo: Algorithm, eval_env: Any, env_params: Any, max_steps: int,
                   deterministic: bool = True) -> Callable[[Any, chex.PRNGKey], chex.Array]:
    """`evaluate(state, key) -> returns[eval_env.num_envs]`: one episode per env copy.

    The copies start from fresh resets that keep the training state's normalisation
    statistics; the loop stops once every copy has finished (or after `max_steps`, when an
    unfinished episode counts with the return it has so far). Returns are raw rewards.
    """

    def evaluate(state: Any, key: chex.PRNGKey) -> chex.Array:
        params = algo.policy_params(state)
        reset_key, key = jax.random.split(key)
        obs, env_state = eval_env.reset_from(reset_key, env_params, algo.env_state(state))
        zeros = jnp.zeros(eval_env.num_envs)

        def running(carry):
            t, finished = carry[0], carry[5]
            return jnp.logical_and(t < max_steps, ~jnp.all(finished))

        def step(carry):
            t, obs, env_state, key, returns, finished, partial = carry
            key, act_key, step_key = jax.random.split(key, 3)
            action = algo.act(params, obs, act_key, deterministic)
            obs, env_state, _, _, _, info = eval_env.step(step_key, env_state, action, env_params)
            first_end = jnp.logical_and(info["episode_done"], ~finished)
            returns = jnp.where(first_end, info["episode_return"], returns)
            partial = jnp.where(finished, partial, info["episode_return"])
            return t + 1, obs, env_state, key, returns, finished | info["episode_done"], partial

        carry = (jnp.int32(0), obs, env_state, key, zeros, zeros.astype(bool), zeros)
        _, _, _, _, returns, finished, partial = jax.lax.while_loop(running, step, carry)
        return jnp.where(finished, returns, partial)

    return evaluate
