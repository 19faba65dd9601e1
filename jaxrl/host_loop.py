"""The population driver for envs stepped on the host (gymnasium worker processes, EnvPool).

The same algorithms through the same rollout contract (`jaxrl.rollout`): the envs step outside
JAX, the compiled `policy` of the whole population chooses their actions, and every update ends
with one compiled `learn` on the collected `Steps` — the very functions the jittable `update`
is built from.

Overlap. Each member's E envs are split into `groups` (G) equal groups, each a host vector env
of its own (P members x E/G envs). The groups step in turns: while group g's simulators step,
the device chooses the next actions of the group that has just come back, so neither the
simulators nor the device wait for each other (G = 1: strict lockstep, act -> step -> act).
Every env still takes T steps per update and `learn` gets the same [T, E] batch, all acted
on by the same networks; only the random stream differs from G = 1 (one policy key per group
and step), so a run is reproducible for its (seed, groups).

Host work per step is a few numpy copies: the rollout is written in place into preallocated
host arrays (two, used in turns, so a `learn` still reading one never sees it rewritten) and
sent to the device once per update; per-update metrics stay on the device until the chunk ends.

Replay learners (`learn_while_stepping`, algorithms with a replay buffer only): the gradient
steps of update u run on the device while the envs step rollout u + 1, which is therefore acted
on by the networks from before update u's gradient steps (one update behind the strict order,
and with its exploration schedule one update behind too). Every rollout is still stored and
learned from exactly once, in order; a chunk ends with all its rollouts learned, so checkpoints
and chunk boundaries are unchanged.

`HostPopulation` is a `population.Driver` like `Population`, composing the same
`jaxrl.members.Members` (mesh, placement, compiled-program cache, data-parallel mode), so
`population.Run` drives it chunk by chunk with the same reports, evaluation, checkpoints and
resume; env state lives in other processes, so a resumed run restarts its envs from fresh
seeds (and the algorithm closes anything that spanned the reset).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.algos.base import Algorithm
from jaxrl.envs.host.common import HostStep, HostVecEnv
from jaxrl.members import Members
from jaxrl.population import reduce_chunk
from jaxrl.rollout import Steps, reset_key, step_keys

TRAIN_STREAM, RESUME_STREAM, GROUP_STREAM = 0, 1, 2
LAGGED_ACT_STREAM = 0x6C6167  # acting keys of a rollout taken while the previous update learns


def env_seeds(seed: int, stream: int, member: int, index: int, count: int) -> np.ndarray:
    """`count` env seeds for one member, a function of (seed, stream, member, index) only."""
    return np.random.SeedSequence([seed, stream, member, index]).generate_state(count).astype(np.int64)


def host_groups(requested: int, envs_per_member: int) -> int:
    """The env groups that step in turns: `requested`, or (0) two when the envs split evenly."""
    if requested:
        return requested
    return 2 if envs_per_member % 2 == 0 else 1


class TimeSplit:
    """Where the host loop's training time goes: waiting on the envs, waiting on the device,
    and the rest (host work: copies, dispatch, Python)."""

    def __init__(self) -> None:
        self.env = self.device = self.total = 0.0

    def add_total(self, seconds: float) -> None:
        self.total += seconds

    def take(self) -> dict[str, float]:
        """Seconds of each share since the last call."""
        split = {"env_wait": self.env, "device_wait": self.device,
                 "host": max(self.total - self.env - self.device, 0.0)}
        self.env = self.device = self.total = 0.0
        return split


class RolloutBuffer:
    """One update's `Steps` in host memory, [P, T, E, ...], written in place group by group."""

    def __init__(self, abstract: Steps):
        self.steps = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)

    def decision(self, t: int, envs: slice, obs: np.ndarray, record: Any) -> None:
        """The observations a group acted on at step t, and what its policy recorded."""
        self.steps.obs[:, t, envs] = obs
        jax.tree.map(lambda buf, x: buf.__setitem__((slice(None), t, envs), x), self.steps.record, record)

    def outcome(self, t: int, envs: slice, result: HostStep, num_members: int) -> None:
        """What the group's envs returned at step t (flat [P * E/G] arrays)."""
        for name in ("reward", "terminated", "truncated", "final_obs", "episode_done", "episode_return",
                     "episode_length"):
            value = getattr(result, name)
            getattr(self.steps, name)[:, t, envs] = value.reshape((num_members, -1) + value.shape[1:])


class HostPopulation:
    """A `population.Driver` over host vector envs (see the module docstring).

    `open_env(n)` starts a host vector env of n envs; the training envs (`groups` of members x
    `envs_per_member / groups`) open with the population, the evaluation env (members x
    `eval_episodes`) at the first evaluation. `close` stops them all. The members are never
    padded (a padding member would step envs for no one) nor split into calls.
    """

    def __init__(self, algo: Algorithm, num_members: int, *, open_env: Callable[[int], HostVecEnv],
                 observation_space: Any, envs_per_member: int, seed: int = 0, eval_episodes: int = 0,
                 eval_max_steps: int = 1000, deterministic: bool = True,
                 devices: Sequence[Any] | None = None, seed_index: np.ndarray | None = None,
                 data_parallel: bool = False, programs: dict | None = None, groups: int = 1,
                 learn_while_stepping: bool = False):
        if groups < 1 or envs_per_member % groups:
            raise ValueError(f"groups={groups} must divide the {envs_per_member} envs of each member")
        if learn_while_stepping and algo.spec.replay_field is None:
            raise ValueError(f"learn_while_stepping needs a replay learner; {algo.name} learns from "
                             f"the rollout it just collected")
        self.members = Members(algo, num_members, devices=devices, pad=False, seed_index=seed_index,
                               data_parallel=data_parallel, programs=programs)
        self.algo, self.num_members = self.members.algo, num_members
        self.open_env, self.seed = open_env, seed
        self.observation_space = observation_space
        self.envs_per_member, self.eval_episodes = envs_per_member, eval_episodes
        self.groups, self.learn_while_stepping = groups, learn_while_stepping
        self.group_slices = [slice(g * envs_per_member // groups, (g + 1) * envs_per_member // groups)
                             for g in range(groups)]
        self.eval_max_steps, self.can_evaluate = eval_max_steps, eval_episodes > 0
        self.envs: list[HostVecEnv] = []
        self.eval_env: HostVecEnv | None = None
        self._obs: list[np.ndarray] | None = None  # per group, [P, E/G, ...]
        self._updates: int | None = None
        self._buffers: list[RolloutBuffer] = []
        self._time = TimeSplit()
        self._compiled_act = self._compiled_learn = None  # set by `compile`
        self._build(deterministic)

    def _build(self, deterministic: bool) -> None:
        """The jitted pieces of `self.algo` (data-parallel: its gradient-syncing rebuild)."""
        algo, per_member = self.algo, self.members.per_member

        def act(view, obs, hp):  # one group's decision; the key goes back, not the state
            key, act_key, _ = step_keys(view.key)
            env_action, record = algo.policy(view, obs, act_key, hp)
            return key, env_action, record

        def lagged_view(view):  # a copy that outlives the state `learn` is about to consume
            view = jax.tree.map(jnp.copy, view)
            return view._replace(key=jax.random.fold_in(view.key, LAGGED_ACT_STREAM))

        def eval_act(state, obs, key, step):
            key = jax.random.fold_in(key, step)  # a fresh key per step, inside the compiled call
            return algo.act(algo.policy_params(state), obs, key, deterministic)

        self._act = per_member(act, 3)
        self._lagged_view = per_member(lagged_view, 1)
        self._spend_reset_key = per_member(lambda key: reset_key(key)[0], 1)
        self._learn = per_member(algo.learn, 3, donate=True)
        self._after_reset = per_member(algo.after_env_reset, 1, donate=True)
        self._eval_act = per_member(eval_act, 4)

    def _view(self, state: Any) -> Any:
        """What the policy may read of the state: all of it but the replay buffer."""
        field = self.algo.spec.replay_field
        return state if field is None else state._replace(**{field: None})

    # ---- envs ---------------------------------------------------------------------------
    def _open(self) -> list[HostVecEnv]:
        if not self.envs:
            per_group = self.num_members * (self.envs_per_member // self.groups)
            self.envs = [self.open_env(per_group) for _ in range(self.groups)]
        return self.envs

    def _by_member(self, flat: np.ndarray) -> np.ndarray:
        return flat.reshape((self.num_members, -1) + flat.shape[1:])

    def _reset(self, stream: int, index: int) -> None:
        """Fresh episodes in every training env; GRPO-style groups share a seed."""
        groups = max(self.algo.spec.reset_groups, 1)
        count = self.envs_per_member // groups
        seeds = np.stack([np.repeat(env_seeds(self.seed, stream, int(m), index, count), groups)
                          for m in self.members.seed_index])  # a member's envs follow its seed, not its setting
        self._obs = [self._by_member(env.reset(seeds[:, envs].reshape(-1)))
                     for env, envs in zip(self._open(), self.group_slices)]

    def close(self) -> None:
        for env in (*self.envs, self.eval_env):
            if env is not None:
                env.close()
        self.envs, self.eval_env = [], None

    # ---- the Driver interface -----------------------------------------------------------
    def init(self, keys: chex.Array, hparams: Any) -> Any:
        state = self.members.init(keys, hparams)
        self._updates = 0
        if not self.algo.spec.reset_groups:
            self._reset(TRAIN_STREAM, 0)
        return state

    def _abstract_obs(self, per_member: int) -> jax.ShapeDtypeStruct:
        space = self.observation_space
        return jax.ShapeDtypeStruct((self.num_members, per_member) + tuple(space.shape),
                                    space.dtype, sharding=self.members.sharding)

    def compile(self, state: Any, hparams: Any) -> float:
        """Compiles act, learn and (with evaluation) the greedy act ahead of the first chunk."""
        members, view = self.members, self._view(state)
        obs = self._abstract_obs(self.envs_per_member // self.groups)
        self._compiled_act = members.compiled("act", self._act, view, obs, hparams)
        if self.learn_while_stepping:
            members.compiled("lagged_view", self._lagged_view, view)
        _, _, record = jax.eval_shape(self._act, view, obs, hparams)
        steps = self._abstract_steps(self._abstract_obs(self.envs_per_member), record)
        self._compiled_learn = members.compiled("learn", self._learn, state, steps, hparams)
        self._buffers = [RolloutBuffer(steps) for _ in range(2)]
        if self.can_evaluate:
            keys = members.place(jnp.zeros((self.num_members, 2), jnp.uint32))
            members.compiled("eval_act", self._eval_act, state,
                             self._abstract_obs(self.eval_episodes), keys, self._steps(0))
        return members.compile_seconds

    def _abstract_steps(self, obs: jax.ShapeDtypeStruct, record: Any) -> Steps:
        """[P, T, E, ...] shapes of one update's `Steps` (records given for one group)."""
        envs, steps = self.envs_per_member, self.algo.spec.rollout_steps
        time_major = lambda s: jax.ShapeDtypeStruct(  # noqa: E731  [P, E, ...] -> [P, T, E, ...]
            s.shape[:1] + (steps, envs) + s.shape[2:], s.dtype, sharding=self.members.sharding)
        flag = jax.ShapeDtypeStruct(obs.shape[:2], jnp.bool_)
        return Steps(time_major(obs), jax.tree.map(time_major, record),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.float32)),
                     time_major(flag), time_major(flag), time_major(obs), time_major(flag),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.float32)),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.int32)))

    def train_chunk(self, state: Any, hparams: Any, num_updates: int) -> tuple[Any, dict]:
        """`num_updates` updates of every member, each a host rollout then one `learn`."""
        start = time.perf_counter()
        state, metrics = self._train_chunk(state, hparams, num_updates)
        self._time.add_total(time.perf_counter() - start)
        return state, metrics

    def _train_chunk(self, state: Any, hparams: Any, num_updates: int) -> tuple[Any, dict]:
        if self._updates is None:  # continuing a restored run: its envs are gone
            self._updates = int(np.asarray(jax.device_get(state.update_step)).reshape(-1)[0])
            if not self.algo.spec.reset_groups:
                self._reset(RESUME_STREAM, self._updates)
                state = self._after_reset(state)
        metrics, waiting = [], None  # waiting: a collected rollout not yet learned from (lagged)
        for _ in range(num_updates):
            if self.algo.spec.reset_groups:  # fresh grouped resets, a reset key spent as on device
                self._reset(GROUP_STREAM, self._updates)
                state = state._replace(key=self._spend_reset_key(state.key))
            buffer = self._buffers[self._updates % 2]
            if waiting is not None:  # learn from the last rollout while acting with a copy from before
                view = self._lagged_view(self._view(state))
                state, update_metrics = self._compiled_learn(state, waiting, hparams)
                metrics.append(update_metrics)
                self._rollout(view, hparams, buffer)
            else:
                state = state._replace(key=self._rollout(self._view(state), hparams, buffer).key)
            steps = self.members.place(buffer.steps)
            if self.learn_while_stepping:
                waiting = steps
            else:
                state, update_metrics = self._compiled_learn(state, steps, hparams)
                metrics.append(update_metrics)
            self._updates += 1
        if waiting is not None:
            state, update_metrics = self._compiled_learn(state, waiting, hparams)
            metrics.append(update_metrics)
        return state, self._reduce(metrics)

    def _reduce(self, metrics: list[dict]) -> dict:
        """The chunk's per-update metrics, fetched once and reduced as `reduce_chunk` does."""
        start = time.perf_counter()
        fetched = jax.device_get(metrics)
        self._time.device += time.perf_counter() - start
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for update in fetched:
            for name, value in update.items():
                value = np.asarray(value, np.float64)
                defined = ~np.isnan(value)
                sums[name] = sums.get(name, 0.0) + np.where(defined, value, 0.0)
                counts[name] = counts.get(name, 0.0) + defined
        return reduce_chunk(sums, counts)

    def _rollout(self, view: Any, hparams: Any, buffer: RolloutBuffer) -> Any:
        """`rollout_steps` steps of every env into `buffer`, the groups stepping in turns (see
        the module docstring); returns `view` with its key advanced past the rollout."""
        steps, envs, timer = self.algo.spec.rollout_steps, self._open(), self._time
        act, place = self._compiled_act, self.members.place

        def decide(group: int, t: int) -> None:  # group's actions for step t, sent to its envs
            nonlocal view
            obs = self._obs[group]
            key, env_action, record = act(view, place(obs), hparams)
            view = view._replace(key=key)
            start = time.perf_counter()
            env_action, record = jax.device_get((env_action, record))
            timer.device += time.perf_counter() - start
            envs[group].step_async(env_action.reshape((-1,) + env_action.shape[2:]))
            buffer.decision(t, self.group_slices[group], obs, record)  # while the envs step

        for group in range(self.groups):
            decide(group, 0)
        for t in range(steps):
            for group, env in enumerate(envs):
                start = time.perf_counter()
                result = env.step_wait()
                timer.env += time.perf_counter() - start
                buffer.outcome(t, self.group_slices[group], result, self.num_members)
                self._obs[group] = self._by_member(result.obs)
                if t + 1 < steps:
                    decide(group, t + 1)
        return view

    def _steps(self, t: int) -> Any:
        """Step index `t` for every member, placed like the population's other inputs."""
        return self.members.place(np.full(self.num_members, t, np.int32))

    def take_time_split(self) -> dict[str, float] | None:
        """Seconds since the last call spent waiting on the envs, on the device, and on the
        host's own work (`TimeSplit`)."""
        return self._time.take()

    def evaluate(self, state: Any, keys: chex.Array) -> np.ndarray:
        """One episode per eval env ([members, eval_episodes] returns), on envs apart from
        training's, seeded from `keys`; unfinished episodes count with their return so far."""
        if self.eval_env is None:
            self.eval_env = self.open_env(self.num_members * self.eval_episodes)
        raw = np.asarray(jax.device_get(keys)).reshape(self.num_members, -1)
        seeds = np.stack([np.random.SeedSequence([int(x) for x in row]).generate_state(self.eval_episodes)
                          for row in raw]).astype(np.int64)
        obs = self._by_member(self.eval_env.reset(seeds.reshape(-1)))
        place = self.members.place
        keys = place(keys)
        act = self.members.compiled("eval_act", self._eval_act, state, place(obs), keys, self._steps(0))
        finished = np.zeros(seeds.size, bool)
        returns, partial = np.zeros(seeds.size), np.zeros(seeds.size)
        for t in range(self.eval_max_steps):
            action = np.asarray(act(state, place(obs), keys, self._steps(t)))
            result = self.eval_env.step(action.reshape((-1,) + action.shape[2:]))
            first_end = result.episode_done & ~finished
            returns[first_end] = result.episode_return[first_end]
            partial = np.where(finished, partial, result.episode_return)
            finished |= result.episode_done
            obs = self._by_member(result.obs)
            if finished.all():
                break
        return self._by_member(np.where(finished, returns, partial))
