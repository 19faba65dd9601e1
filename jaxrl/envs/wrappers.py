"""Wrappers over a `VecEnv` (batched state): episode statistics, flattening, normalisation.

Every wrapper also has `reset_from(key, params, like_state)`: a fresh reset that keeps the
running statistics held in `like_state` (a state of the same wrapper chain, any `num_envs`),
which is how evaluation uses the training run's normalisation. Order them as `make_vec` does: statistics first (they must see raw rewards), then
observation flattening, then normalisation, whose running statistics are shared by all
`num_envs` copies of one agent.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from jaxrl.envs.core import Wrapper


@struct.dataclass
class EpisodeStatsState:
    inner: Any
    episode_return: chex.Array  # [num_envs] running return of the current episode
    episode_length: chex.Array  # [num_envs]


class EpisodeStatistics(Wrapper):
    """Reports the raw return and length of every episode as it ends, across auto-resets.

    Adds to `info`: `episode_done` (bool [N]), and `episode_return`/`episode_length`, the
    finished episode's totals where `episode_done` is true (and the running totals elsewhere).
    """

    def reset(self, key, params):
        return self._start(*self.env.reset(key, params))

    def reset_from(self, key, params, like_state: EpisodeStatsState):
        return self._start(*self.env.reset_from(key, params, like_state.inner))

    def _start(self, obs, inner):
        zeros = jnp.zeros(obs.shape[:1], jnp.float32)
        return obs, EpisodeStatsState(inner, zeros, zeros.astype(jnp.int32))

    def step(self, key, state: EpisodeStatsState, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, action, params)
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        done = jnp.logical_or(terminated, truncated)
        info = {**info, "episode_done": done, "episode_return": episode_return,
                "episode_length": episode_length}
        new_state = EpisodeStatsState(
            inner, jnp.where(done, 0.0, episode_return), jnp.where(done, 0, episode_length)
        )
        return obs, new_state, reward, terminated, truncated, info


class FlattenObservation(Wrapper):
    """Flattens each copy's observation to a vector: [N, *shape] -> [N, prod(shape)]."""

    def observation_space(self, params):
        inner = self.env.observation_space(params)
        size = 1
        for dim in inner.shape:
            size *= dim
        return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    def reset(self, key, params):
        obs, state = self.env.reset(key, params)
        return _flatten(obs), state

    def reset_from(self, key, params, like_state):
        obs, state = self.env.reset_from(key, params, like_state)
        return _flatten(obs), state

    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        info = {**info, "final_observation": _flatten(info["final_observation"])}
        return _flatten(obs), state, reward, terminated, truncated, info


def _flatten(obs: chex.Array) -> chex.Array:
    return obs.reshape(obs.shape[0], -1).astype(jnp.float32)


@struct.dataclass
class RunningMeanStd:
    """Mean and variance of a stream of batches (Chan et al.'s parallel update)."""

    mean: chex.Array
    var: chex.Array
    count: chex.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> "RunningMeanStd":
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4))

    def update(self, batch: chex.Array) -> "RunningMeanStd":
        batch_mean, batch_var, n = batch.mean(0), batch.var(0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningMeanStd(mean, m2 / total, total)


@struct.dataclass
class NormalizeObsState:
    inner: Any
    stats: RunningMeanStd


class NormalizeObservation(Wrapper):
    """Standardises observations with running statistics shared across the agent's copies.

    With `update_stats=False` (evaluation) the statistics are used but never changed.
    """

    def __init__(self, env, update_stats: bool = True, clip: float = 10.0, eps: float = 1e-8):
        super().__init__(env)
        self.update_stats, self.clip, self.eps = update_stats, clip, eps

    def _normalize(self, obs, stats: RunningMeanStd):
        return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + self.eps), -self.clip, self.clip)

    def reset(self, key, params):
        obs, inner = self.env.reset(key, params)
        stats = RunningMeanStd.create(obs.shape[1:])
        stats = stats.update(obs) if self.update_stats else stats
        return self._normalize(obs, stats), NormalizeObsState(inner, stats)

    def reset_from(self, key, params, like_state: NormalizeObsState):
        obs, inner = self.env.reset_from(key, params, like_state.inner)
        return self._normalize(obs, like_state.stats), NormalizeObsState(inner, like_state.stats)

    def step(self, key, state: NormalizeObsState, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, action, params)
        stats = state.stats.update(obs) if self.update_stats else state.stats
        info = {**info, "final_observation": self._normalize(info["final_observation"], stats)}
        return self._normalize(obs, stats), NormalizeObsState(inner, stats), reward, terminated, truncated, info


@struct.dataclass
class NormalizeRewardState:
    inner: Any
    stats: RunningMeanStd  # statistics of the discounted return
    discounted_return: chex.Array  # [num_envs]


class NormalizeReward(Wrapper):
    """Scales rewards by the running std of the discounted return (as gymnasium does)."""

    def __init__(self, env, gamma: float = 0.99, update_stats: bool = True, clip: float = 10.0,
                 eps: float = 1e-8):
        super().__init__(env)
        self.gamma, self.update_stats, self.clip, self.eps = gamma, update_stats, clip, eps

    def reset(self, key, params):
        obs, inner = self.env.reset(key, params)
        zeros = jnp.zeros(obs.shape[:1])
        return obs, NormalizeRewardState(inner, RunningMeanStd.create(()), zeros)

    def reset_from(self, key, params, like_state: NormalizeRewardState):
        obs, inner = self.env.reset_from(key, params, like_state.inner)
        return obs, NormalizeRewardState(inner, like_state.stats, jnp.zeros(obs.shape[:1]))

    def step(self, key, state: NormalizeRewardState, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, action, params)
        discounted = state.discounted_return * self.gamma + reward
        stats = state.stats.update(discounted) if self.update_stats else state.stats
        done = jnp.logical_or(terminated, truncated)
        scaled = jnp.clip(reward / jnp.sqrt(stats.var + self.eps), -self.clip, self.clip)
        new_state = NormalizeRewardState(inner, stats, jnp.where(done, 0.0, discounted))
        return obs, new_state, scaled, terminated, truncated, info
