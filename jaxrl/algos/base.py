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
