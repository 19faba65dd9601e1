"""The contract every algorithm follows, so one driver (jittable or host) can run any of them.

An algorithm is a bundle of pure functions over one agent's state plus static metadata
(`AlgorithmSpec`). Around the env step it is split in two, once: `policy` decides one step
for every env copy and `learn` updates from a time-major rollout (`jaxrl.rollout.Steps`).
`jaxrl.rollout` drives them with `lax.scan` over a jittable env (`update`); `jaxrl.host_loop`
drives the very same functions over envs stepped in worker processes. The population driver
adds the population axis (vmap), the device axis (sharding) and the time axis (chunks).

`Algorithm` is a `flax.struct` dataclass: its functions and spec are static, its default
hyperparameters are leaves, so an algorithm can be closed over or passed through `jax.jit`.

Metrics returned by `learn`/`update` are a flat dict of float scalars. Keys starting with
`episode_` are *sums over the episodes that finished* during the update and `episodes`
is their count; every other key is a per-update value that the driver averages over the
updates where it is defined (an update may report NaN, e.g. a loss before learning starts).
"""

from __future__ import annotations

from typing import Any, Callable, Generic, NamedTuple, Protocol, TypeVar

import chex
import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.errors import ConfigError
from jaxrl.rl import linear_decay
from jaxrl.rollout import Steps

Metrics = dict[str, chex.Array]
State = TypeVar("State")
HParams = TypeVar("HParams")
# Applied to one member's gradients before every optimiser step, inside the population's
# vmap: a data-parallel population (`jaxrl.population`) averages them over all members.
GradSync = Callable[[Any], Any]


class InitFn(Protocol[State, HParams]):
    def __call__(self, key: chex.PRNGKey, hparams: HParams) -> State:
        """One agent's initial state, its env copies reset (jittable envs)."""


class PolicyFn(Protocol[State, HParams]):
    def __call__(self, state: State, obs: chex.Array, key: chex.PRNGKey,
                 hparams: HParams) -> tuple[chex.Array, Any]:
        """One step's env actions for every env copy, and the per-step `record` learning needs."""


class LearnFn(Protocol[State, HParams]):
    def __call__(self, state: State, steps: Steps, hparams: HParams) -> tuple[State, Metrics]:
        """The state after learning from one update's rollout, and the update's metrics."""


class UpdateFn(Protocol[State, HParams]):
    def __call__(self, state: State, hparams: HParams) -> tuple[State, Metrics]:
        """One whole update on a jittable env: rollout, then learn."""


class ActFn(Protocol):
    def __call__(self, params: Any, obs: chex.Array, key: chex.PRNGKey,
                 deterministic: bool | chex.Array = False) -> chex.Array:
        """Evaluation actions; `deterministic` may be a Python or a traced bool."""


class AlgorithmSpec(NamedTuple):
    """Static facts about a bound algorithm (hashable, never traced)."""

    name: str
    env_steps_per_update: int  # env steps one update takes, per agent
    num_updates: int  # updates in the whole run, per agent (schedules depend on it)
    rollout_steps: int  # T: steps of every env copy per update
    # G > 1: every update starts from fresh resets, G consecutive copies sharing a seed (GRPO)
    reset_groups: int = 0
    # the state's field holding a replay buffer (None: none); memory reports count it
    # apart and checkpoints may leave it out
    replay_field: str | None = None


def either(flag: bool | chex.Array, if_true: Callable[[], Any], if_false: Callable[[], Any]) -> Any:
    """`if_true()` or `if_false()`: chosen while tracing for a Python bool, else elementwise
    (both computed) for a traced one, e.g. a `deterministic` flag passed through `jit`."""
    if isinstance(flag, bool):
        return if_true() if flag else if_false()
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), if_true(), if_false())


def learning_rate(lr: chex.Array, update_step: chex.Array, num_updates: int, anneal: bool) -> chex.Array:
    """`lr`, or (`anneal`) `lr` decayed linearly to 0 over the run's `num_updates`."""
    return linear_decay(lr, update_step, num_updates) if anneal else lr


def updates_in_budget(total_env_steps: int, steps_per_update: int, fix: str) -> int:
    """Whole updates in the budget, or a ConfigError when not even one fits (`fix` says how)."""
    num_updates = total_env_steps // steps_per_update
    if num_updates < 1:
        raise ConfigError(f"total_env_steps={total_env_steps} is less than one update's "
                          f"{steps_per_update} env steps; raise it or {fix}")
    return num_updates


def _same(state: Any) -> Any:
    return state


def _params(state: Any) -> Any:
    return state.params


def _env_state(state: Any) -> Any:
    return state.env_state


class Algorithm(struct.PyTreeNode, Generic[State, HParams]):
    """Pure functions of one agent; none of them may close over mutable host state."""

    spec: AlgorithmSpec = struct.field(pytree_node=False)
    init: InitFn = struct.field(pytree_node=False)
    policy: PolicyFn = struct.field(pytree_node=False)
    learn: LearnFn = struct.field(pytree_node=False)
    update: UpdateFn = struct.field(pytree_node=False)  # `jaxrl.rollout.make_update` of the two above
    act: ActFn = struct.field(pytree_node=False)
    default_hparams: Any  # vmappable hyperparameters (a NamedTuple of float32 scalars)
    policy_params: Callable[[Any], Any] = struct.field(pytree_node=False, default=_params)
    env_state: Callable[[Any], Any] = struct.field(pytree_node=False, default=_env_state)
    # (params, obs) -> named per-observation arrays that explain a decision (action
    # probabilities, Q-values, value), printed by `jaxrl eval --trace`.
    explain: Callable[[Any, chex.Array], dict[str, chex.Array]] | None = struct.field(
        pytree_node=False, default=None)
    # (state) -> state after the envs were reset outside the algorithm's view (a resumed
    # host run): closes anything that spans steps, like DQN's open n-step windows.
    after_env_reset: Callable[[Any], Any] = struct.field(pytree_node=False, default=_same)
    # The same algorithm rebuilt so that every gradient step passes its gradients through a
    # `GradSync` first (data-parallel populations); None: the algorithm does not offer it.
    with_grad_sync: Callable[[GradSync], "Algorithm"] | None = struct.field(
        pytree_node=False, default=None)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def env_steps_per_update(self) -> int:
        return self.spec.env_steps_per_update

    @property
    def num_updates(self) -> int:
        return self.spec.num_updates

    @property
    def replay_field(self) -> str | None:
        return self.spec.replay_field
