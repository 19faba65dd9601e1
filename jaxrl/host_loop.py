"""The population driver for envs stepped on the host (gymnasium worker processes, EnvPool).

The same algorithms through the same rollout contract (`jaxrl.rollout`): every env step
makes one compiled call of the algorithm's `policy` for the whole population (P members x E
envs each, keys spent as `rollout.step_keys` spends them) and one step of a host vector env
of P * E envs; every update ends with one compiled `learn` call on the collected `Steps` —
the very functions the jittable `update` is built from. While the
workers step, the host files the previous decision away (step_async / step_wait), so that
bookkeeping overlaps env stepping. `HostPopulation` is a `population.Driver` like
`Population`, composing the same `jaxrl.members.Members` (mesh, placement, compiled-program
cache, data-parallel mode), so `population.Run` drives it chunk by chunk with the same
reports, evaluation, checkpoints and resume; env state lives in other processes, so a resumed
run restarts its envs from fresh seeds (and the algorithm closes anything that spanned the reset).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.algos.base import Algorithm
from jaxrl.envs.host.common import HostVecEnv
from jaxrl.members import Members
from jaxrl.population import reduce_chunk
from jaxrl.rollout import Steps, reset_key, step_keys

TRAIN_STREAM, RESUME_STREAM, GROUP_STREAM = 0, 1, 2


def env_seeds(seed: int, stream: int, member: int, index: int, count: int) -> np.ndarray:
    """`count` env seeds for one member, a function of (seed, stream, member, index) only."""
    return np.random.SeedSequence([seed, stream, member, index]).generate_state(count).astype(np.int64)


class HostPopulation:
    """A `population.Driver` over a host vector env (see the module docstring).

    `open_env(n)` starts a host vector env of n envs; the training env (members x
    `envs_per_member`) opens with the population, the evaluation env (members x
    `eval_episodes`) at the first evaluation. `close` stops both. The members are never padded
    (a padding member would step envs for no one) nor split into calls.
    """

    def __init__(self, algo: Algorithm, num_members: int, *, open_env: Callable[[int], HostVecEnv],
                 observation_space: Any, envs_per_member: int, seed: int = 0, eval_episodes: int = 0,
                 eval_max_steps: int = 1000, deterministic: bool = True,
                 devices: Sequence[Any] | None = None, seed_index: np.ndarray | None = None,
                 data_parallel: bool = False, programs: dict | None = None):
        self.members = Members(algo, num_members, devices=devices, pad=False, seed_index=seed_index,
                               data_parallel=data_parallel, programs=programs)
        self.algo, self.num_members = self.members.algo, num_members
        self.open_env, self.seed = open_env, seed
        self.observation_space = observation_space
        self.envs_per_member, self.eval_episodes = envs_per_member, eval_episodes
        self.eval_max_steps, self.can_evaluate = eval_max_steps, eval_episodes > 0
        self.env: HostVecEnv | None = None
        self.eval_env: HostVecEnv | None = None
        self._obs: np.ndarray | None = None
        self._updates: int | None = None
        self._env_seconds = 0.0
        self._compiled_act = self._compiled_learn = None  # set by `compile`
        self._build(deterministic)

    def _build(self, deterministic: bool) -> None:
        """The jitted pieces of `self.algo` (data-parallel: its gradient-syncing rebuild)."""
        algo, per_member = self.algo, self.members.per_member

        def act(state, obs, hp):  # one env step's decision; the key goes back, not the state,
            key, act_key, _ = step_keys(state.key)  # so a call never copies replay buffers
            env_action, record = algo.policy(state, obs, act_key, hp)
            return key, env_action, record

        def eval_act(state, obs, key, step):
            key = jax.random.fold_in(key, step)  # a fresh key per step, inside the compiled call
            return algo.act(algo.policy_params(state), obs, key, deterministic)

        self._act = per_member(act, 3)
        self._spend_reset_key = per_member(lambda key: reset_key(key)[0], 1)
        self._learn = per_member(algo.learn, 3, donate=True)
        self._after_reset = per_member(algo.after_env_reset, 1, donate=True)
        self._eval_act = per_member(eval_act, 4)

    # ---- envs ---------------------------------------------------------------------------
    def _open(self) -> HostVecEnv:
        if self.env is None:
            self.env = self.open_env(self.num_members * self.envs_per_member)
        return self.env

    def _by_member(self, flat: np.ndarray) -> np.ndarray:
        return flat.reshape((self.num_members, -1) + flat.shape[1:])

    def _reset(self, stream: int, index: int) -> None:
        """Fresh episodes in every training env; GRPO-style groups share a seed."""
        groups = max(self.algo.spec.reset_groups, 1)
        count = self.envs_per_member // groups
        seeds = np.stack([np.repeat(env_seeds(self.seed, stream, int(m), index, count), groups)
                          for m in self.members.seed_index])  # a member's envs follow its seed, not its setting
        self._obs = self._by_member(self._open().reset(seeds.reshape(-1)))

    def close(self) -> None:
        for env in (self.env, self.eval_env):
            if env is not None:
                env.close()
        self.env = self.eval_env = None

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
        members = self.members
        obs = self._abstract_obs(self.envs_per_member)
        self._compiled_act = members.compiled("act", self._act, state, obs, hparams)
        _, env_action, record = jax.eval_shape(self._act, state, obs, hparams)
        self._compiled_learn = members.compiled("learn", self._learn, state,
                                                self._abstract_steps(obs, record), hparams)
        if self.can_evaluate:
            keys = members.place(jnp.zeros((self.num_members, 2), jnp.uint32))
            members.compiled("eval_act", self._eval_act, state,
                             self._abstract_obs(self.eval_episodes), keys, self._steps(0))
        return members.compile_seconds

    def _abstract_steps(self, obs: jax.ShapeDtypeStruct, record: Any) -> Steps:
        time_major = lambda s: jax.ShapeDtypeStruct(  # noqa: E731  [P, E, ...] -> [P, T, E, ...]
            s.shape[:1] + (self.algo.spec.rollout_steps,) + s.shape[1:], s.dtype, sharding=self.members.sharding)
        flag = jax.ShapeDtypeStruct(obs.shape[:2], jnp.bool_)
        return Steps(time_major(obs), jax.tree.map(time_major, record),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.float32)),
                     time_major(flag), time_major(flag), time_major(obs), time_major(flag),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.float32)),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.int32)))

    def train_chunk(self, state: Any, hparams: Any, num_updates: int) -> tuple[Any, dict]:
        """`num_updates` updates of every member, each a host rollout then one `learn`."""
        if self._updates is None:  # continuing a restored run: its envs are gone
            self._updates = int(np.asarray(jax.device_get(state.update_step)).reshape(-1)[0])
            if not self.algo.spec.reset_groups:
                self._reset(RESUME_STREAM, self._updates)
                state = self._after_reset(state)
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for _ in range(num_updates):
            if self.algo.spec.reset_groups:  # fresh grouped resets, a reset key spent as on device
                self._reset(GROUP_STREAM, self._updates)
                state = state._replace(key=self._spend_reset_key(state.key))
            state, metrics = self._one_update(state, hparams)
            for name, value in jax.device_get(metrics).items():
                value = np.asarray(value, np.float64)
                defined = ~np.isnan(value)
                sums[name] = sums.get(name, 0.0) + np.where(defined, value, 0.0)
                counts[name] = counts.get(name, 0.0) + defined
            self._updates += 1
        return state, reduce_chunk(sums, counts)

    def _one_update(self, state: Any, hparams: Any) -> tuple[Any, dict]:
        """One host rollout of `rollout_steps` env steps, then one `learn` (after `compile`)."""
        place, act, learn = self.members.place, self._compiled_act, self._compiled_learn
        obs_seq, records, results = [], [], []
        for _ in range(self.algo.spec.rollout_steps):
            obs = self._obs
            key, env_action, record = act(state, place(obs), hparams)
            state = state._replace(key=key)
            env_action = np.asarray(env_action)
            start = time.perf_counter()
            self.env.step_async(env_action.reshape((-1,) + env_action.shape[2:]))
            self._env_seconds += time.perf_counter() - start
            obs_seq.append(obs)  # while the workers step
            records.append(record)
            start = time.perf_counter()
            result = self.env.step_wait()
            self._env_seconds += time.perf_counter() - start
            results.append(result)
            self._obs = self._by_member(result.obs)
        along_time = lambda *xs: np.stack(xs, axis=1)  # noqa: E731  [P, E] x T -> [P, T, E]
        field = lambda name: along_time(*(self._by_member(getattr(r, name)) for r in results))  # noqa: E731
        steps = Steps(along_time(*obs_seq), jax.tree.map(lambda *x: jnp.stack(x, axis=1), *records),
                      field("reward"), field("terminated"), field("truncated"), field("final_obs"),
                      field("episode_done"), field("episode_return"), field("episode_length"))
        return learn(state, place(steps), hparams)

    def _steps(self, t: int) -> Any:
        """Step index `t` for every member, placed like the population's other inputs."""
        return self.members.place(np.full(self.num_members, t, np.int32))

    def take_env_seconds(self) -> float | None:
        """Seconds spent waiting on env stepping since the last call."""
        seconds, self._env_seconds = self._env_seconds, 0.0
        return seconds

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
