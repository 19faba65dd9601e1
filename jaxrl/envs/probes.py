"""Probe environments with values known in closed form, to test that an agent learns.

After Andy Jones' "debugging RL" probes: each isolates one piece (value fitting, obs
dependence, discounting, policy improvement, time-limit bootstrapping) so a failure
points at that piece. Registered as `Probe<name>-v0`.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ProbeState:
    obs: chex.Array  # scalar observation (+1/-1 or 0)
    time: chex.Array  # steps taken in this episode


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 1000


class _Probe(environment.Environment):
    """One scalar observation, two actions; subclasses define `outcome(state, action) ->
    (reward, terminated)`."""

    random_obs = False  # observation drawn from {-1, +1} at every step

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams()

    def _draw(self, key: chex.PRNGKey) -> chex.Array:
        if self.random_obs:
            return jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        return jnp.float32(0.0)

    def reset_env(self, key, params):
        state = ProbeState(obs=self._draw(key), time=0)
        return state.obs[None], state

    def step_env(self, key, state: ProbeState, action, params):
        reward, terminated = self.outcome(state, action)
        new_state = ProbeState(obs=self._draw(key), time=state.time + 1)
        return new_state.obs[None], new_state, reward, terminated, {}

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    @property
    def num_actions(self) -> int:
        return 2


class ConstantReward(_Probe):
    """One step, reward 1: V = 1 (fits a constant value)."""

    def outcome(self, state, action):
        return jnp.float32(1.0), jnp.bool_(True)


class ObsDependentReward(_Probe):
    """One step, reward = observation (±1): V(o) = o (value depends on the input)."""

    random_obs = True

    def outcome(self, state, action):
        return state.obs, jnp.bool_(True)


class Discounting(_Probe):
    """Two steps (obs 0 then 1), reward 1 at the end: V(0) = gamma, V(1) = 1."""

    def reset_env(self, key, params):
        state = ProbeState(obs=jnp.float32(0.0), time=0)
        return state.obs[None], state

    def step_env(self, key, state, action, params):
        last = state.time >= 1
        new_state = ProbeState(obs=jnp.float32(1.0), time=state.time + 1)
        return new_state.obs[None], new_state, last.astype(jnp.float32), last, {}


class ActionDependentReward(_Probe):
    """One step, reward +1 for action 0 and -1 for action 1: the policy must pick 0."""

    def outcome(self, state, action):
        return jnp.where(action == 0, 1.0, -1.0), jnp.bool_(True)


class ObsAndActionReward(_Probe):
    """One step, reward +1 when the action matches the observation's sign (+1 -> 1, -1 -> 0)."""

    random_obs = True

    def outcome(self, state, action):
        right = jnp.where(state.obs > 0, 1, 0)
        return jnp.where(action == right, 1.0, -1.0), jnp.bool_(True)


class TimeLimit(_Probe):
    """Reward 1 forever, cut by a time limit of 5: with bootstrapping V = 1 / (1 - gamma).

    An agent that treats the truncation as a termination learns a smaller value instead.
    """

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=5)

    def outcome(self, state, action):
        return jnp.float32(1.0), jnp.bool_(False)


PROBES = {"ConstantReward": ConstantReward, "ObsDependentReward": ObsDependentReward,
          "Discounting": Discounting, "ActionDependentReward": ActionDependentReward,
          "ObsAndActionReward": ObsAndActionReward, "TimeLimit": TimeLimit}


def _factory(cls):
    @functools.wraps(cls, updated=())  # `make` reads the kwargs `cls` takes through this
    def make(**kwargs):
        env = cls(**kwargs)
        return env, env.default_params
    return make


def register_probes(register) -> None:
    for name, cls in PROBES.items():
        register(f"Probe{name}-v0", _factory(cls))
