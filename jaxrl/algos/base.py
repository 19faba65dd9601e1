"""The contract every algorithm follows, so the population driver can run any of them.

An algorithm is a bundle of pure functions over a per-agent state; the driver adds the
population axis (vmap), the device axis (sharding) and the time axis (chunks of updates).

Metrics returned by `update` are a flat dict of float scalars. Keys starting with
`episode_` are *sums over the episodes that finished* during the update and `episodes`
is their count; every other key is a per-update value that the driver averages over the
updates where it is defined (an update may report NaN, e.g. a loss before learning starts).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex

Metrics = dict[str, chex.Array]
# Applied to one member's gradients before every optimiser step, inside the population's
# vmap: a data-parallel population (`jaxrl.population`) averages them over all members.
GradSync = Callable[[Any], Any]


class HostSteps(NamedTuple):
    """A rollout collected by the host loop, time-major [T, num_envs, ...]: what the env
    returned plus the `record` the algorithm's `act` kept for each step."""

    obs: chex.Array  # the observation each action was chosen from
    record: Any  # per-step pytree from `HostHooks.act` (raw action, log-prob, value, ...)
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    final_obs: chex.Array  # observation the step reached, before auto-reset
    episode_done: chex.Array
    episode_return: chex.Array
    episode_length: chex.Array

    def info(self) -> dict[str, chex.Array]:
        """The episode statistics under the names the jittable env's `info` uses."""
        return {"episode_done": self.episode_done, "episode_return": self.episode_return,
                "episode_length": self.episode_length}


class HostHooks(NamedTuple):
    """The algorithm split around the env step, for envs stepped outside JAX (`jaxrl.host_loop`).

    `act` and `learn` are the pieces the jittable `update` is made of, so both paths run the
    same math; only who steps the env differs.
    """

    # (state, obs, hp) -> (state's next key, env_action, record); it returns the key, not
    # the state, so a compiled call never copies the state (replay buffers can be large)
    act: Callable[..., tuple[chex.PRNGKey, chex.Array, Any]]
    learn: Callable[..., tuple[Any, Metrics]]  # (state, HostSteps, hp) -> (state, metrics)
    rollout_steps: int  # T: steps of every env copy per update
    # G > 1: every update starts from fresh resets, G consecutive copies sharing a seed (GRPO)
    reset_groups: int = 0
    # (state) -> state after the envs were reset outside the algorithm's view (a resumed
    # run): closes anything that spans steps, like DQN's open n-step windows.
    after_env_reset: Callable[[Any], Any] = lambda state: state


class Algorithm(NamedTuple):
    """Pure functions of one agent; none of them may close over mutable host state."""

    name: str
    init: Callable[[chex.PRNGKey, Any], Any]  # (key, hparams) -> state
    update: Callable[[Any, Any], tuple[Any, Metrics]]  # (state, hparams) -> (state, metrics)
    act: Callable[..., chex.Array]  # (params, obs, key, deterministic) -> action
    default_hparams: Any  # vmappable hyperparameters (a NamedTuple of floats)
    env_steps_per_update: int  # env steps one `update` takes, per agent
    num_updates: int  # updates in the whole run, per agent (schedules depend on it)
    policy_params: Callable[[Any], Any] = lambda state: state.params
    env_state: Callable[[Any], Any] = lambda state: state.env_state
    # (params, obs) -> named per-observation arrays that explain a decision (action
    # probabilities, Q-values, value), printed by `jaxrl eval --trace`.
    explain: Callable[[Any, chex.Array], dict[str, chex.Array]] | None = None
    # The state's field that holds a replay buffer (None: no buffer); memory reports count
    # it apart and checkpoints may leave it out.
    replay_field: str | None = None
    # How to train on host envs (gymnasium workers, EnvPool); None: jittable envs only.
    host: HostHooks | None = None
    # The same algorithm rebuilt so that every gradient step passes its gradients through a
    # `GradSync` first (data-parallel populations); None: the algorithm does not offer it.
    with_grad_sync: Callable[[GradSync], "Algorithm"] | None = None
