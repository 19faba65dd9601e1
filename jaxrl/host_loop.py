"""The population driver for envs stepped on the host (gymnasium worker processes, EnvPool).

The same algorithms through the same rollout contract (`jaxrl.rollout`): the envs step outside
JAX, the compiled `policy` of the population chooses their actions, and every update ends with
one compiled `learn` on the collected `Steps` — the very functions the jittable `update` is
built from. By default the whole population acts, steps and learns in lockstep. Two kinds of
overlap, off by default, let the simulators and the devices work at once; neither changes what
a member learns from. (On the 2-core CPU neither pays: both cores are already busy with the
simulators or the learner, and each extra call costs ~0.3 ms; see benchmarks/README.md.)

- Device turns (`device_turns`): the members on each device form a shard with its own envs and
  compiled programs, and the shards take their updates in turns. While one shard's envs step,
  the other shards' `learn` runs on their own devices (each device runs its programs in
  order, so only work on different devices overlaps; on CPU jaxrl makes one device per core).
  Every member still alternates rollout -> learn -> rollout on its own networks. Under
  jax.distributed each process is such a shard (or several): it steps only the envs of the
  members on its own devices.
- Env groups: within a shard, each member's E envs form `groups` (G) equal groups, each a host
  vector env of its own, that step in turns: while one group's simulators step, the device
  chooses the actions of the group that has just come back (G = 1: act -> step -> act).
  Every env still takes T steps per update and `learn` gets the same [T, E] batch acted on by
  the same networks; only the random stream differs with G (one policy key per group and
  step), so a run is reproducible for its (seed, groups).

Host work per step is a few numpy copies: the rollout is written in place into preallocated
host arrays (two per shard, used in turns, so a `learn` still reading one never sees it
rewritten) and sent to the device once per update; per-update metrics stay on the device until
the chunk ends.

Replay learners (`learn_while_stepping`, algorithms with a replay buffer only): the gradient
steps of update u run on the device while the envs step rollout u + 1, which is therefore acted
on by the networks from before update u's gradient steps (one update behind the strict order,
and with its exploration schedule one update behind too). Every rollout is still stored and
learned from exactly once, in order; a chunk ends with all its rollouts learned, so checkpoints
and chunk boundaries are unchanged.

Normalisation (`env.normalize_obs` / `normalize_reward`): the jittable wrappers run over a
`JaxStandIn` whose steps are the host envs' (`wrapped_env`), in one compiled `observe` per step
that updates the running statistics kept in each member's `env_state` and returns the
normalised observations and scaled rewards, exactly as the jittable env would; so the
statistics are checkpointed and resumed with the rest of the state, and evaluation
normalises with them frozen.

`HostPopulation` is a `population.Driver` like `Population`, composing the same
`jaxrl.members.Members` (mesh, placement, compiled-program cache, data-parallel mode, where
the population is always one shard: its gradient steps average over every device), so
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
from jaxrl.members import MEMBER_AXIS, Members
from jaxrl.population import reduce_chunk
from jaxrl.rollout import Steps, reset_key, step_keys

TRAIN_STREAM, RESUME_STREAM, GROUP_STREAM = 0, 1, 2
LAGGED_ACT_STREAM = 0x6C6167  # acting keys of a rollout taken while the previous update learns
OUTCOME_FIELDS = ("reward", "terminated", "truncated", "final_obs", "episode_done", "episode_return",
                  "episode_length")


def env_seeds(seed: int, stream: int, member: int, index: int, count: int) -> np.ndarray:
    """`count` env seeds for one member, a function of (seed, stream, member, index) only."""
    return np.random.SeedSequence([seed, stream, member, index]).generate_state(count).astype(np.int64)


class TimeSplit:
    """Where the host loop's training time goes: waiting on the envs, waiting on the device,
    and the rest (host work: copies, dispatch, Python)."""

    def __init__(self) -> None:
        self.env = self.device = self.total = 0.0

    def take(self) -> dict[str, float]:
        """Seconds of each share since the last call."""
        split = {"env_wait": self.env, "device_wait": self.device,
                 "host": max(self.total - self.env - self.device, 0.0)}
        self.env = self.device = self.total = 0.0
        return split


class RolloutBuffer:
    """One update's `Steps` of a shard in host memory, [M, T, E, ...], written in place."""

    def __init__(self, abstract: Steps):
        self.steps = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)

    def decision(self, t: int, envs: slice, obs: np.ndarray, record: Any) -> None:
        """The observations a group acted on at step t, and what its policy recorded."""
        self.steps.obs[:, t, envs] = obs
        jax.tree.map(lambda buf, x: buf.__setitem__((slice(None), t, envs), x), self.steps.record, record)

    def outcome(self, t: int, envs: slice, result: HostStep) -> None:
        """What a group's envs returned at step t (flat [M * E/G] arrays)."""
        members = self.steps.reward.shape[0]
        for name in OUTCOME_FIELDS:
            value = getattr(result, name)
            getattr(self.steps, name)[:, t, envs] = value.reshape((members, -1) + value.shape[1:])


class Shard:
    """Members `members` of the population with their own host envs (one vector env per env
    group), rollout buffers and compiled programs, placed with `sharding`."""

    def __init__(self, index: int, members: slice, sharding: Any, group_slices: list[slice]):
        self.index, self.members, self.sharding = index, members, sharding
        self.group_slices = group_slices
        self.envs: list[HostVecEnv] = []
        self.obs: list[np.ndarray] = []  # per group, [M, E/G, ...]
        self.buffers: list[RolloutBuffer] = []
        self.programs: dict[str, Any] = {}
        self.waiting: Any = None  # a collected rollout not yet learned from (learn_while_stepping)
        self.fresh_stats = False  # normalising: the next reset starts the running statistics anew
        self.unobserved_reset = False  # normalising: `obs` are a reset's, not normalised yet

    @property
    def size(self) -> int:
        return self.members.stop - self.members.start

    def place(self, tree: Any) -> Any:
        return jax.device_put(tree, self.sharding)

    def feed(self, array: np.ndarray) -> Any:
        """A host array as a program input: single-device programs take numpy as it is (the
        call moves it, ~10 us, where `device_put` takes ~80 us); a mesh needs it placed."""
        return array if isinstance(self.sharding, jax.sharding.SingleDeviceSharding) else self.place(array)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


class HostPopulation:
    """A `population.Driver` over host vector envs (see the module docstring).

    `open_env(n)` starts a host vector env of n envs; each shard's training envs (`groups` of
    its members x `envs_per_member / groups`) open with the population, the evaluation env
    (members x `eval_episodes`) at the first evaluation. `close` stops them all. The members are
    never padded (a padding member would step envs for no one) nor split into calls.
    """

    def __init__(self, algo: Algorithm, num_members: int, *, open_env: Callable[[int], HostVecEnv],
                 observation_space: Any, envs_per_member: int, seed: int = 0, eval_episodes: int = 0,
                 eval_max_steps: int = 1000, deterministic: bool = True,
                 devices: Sequence[Any] | None = None, seed_index: np.ndarray | None = None,
                 data_parallel: bool = False, programs: dict | None = None, groups: int = 1,
                 learn_while_stepping: bool = False, device_turns: bool = True, wrapped_env: Any = None):
        if groups < 1 or envs_per_member % groups:
            raise ValueError(f"groups={groups} must divide the {envs_per_member} envs of each member")
        if wrapped_env is not None and groups > 1:
            raise ValueError("normalising wrappers update their statistics with all a member's envs at "
                             "each step; they need groups=1")
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
        self.wrapped_env = wrapped_env  # None: host observations and rewards go to the agent as they are
        # jax.distributed: each process steps its own members' envs, so it has shards of its own
        self.device_turns = (device_turns or jax.process_count() > 1) and not data_parallel
        self.eval_max_steps, self.can_evaluate = eval_max_steps, eval_episodes > 0
        self.eval_env: HostVecEnv | None = None
        self.shards = self._make_shards()
        self._updates: int | None = None
        self._time = TimeSplit()
        self._build(deterministic)

    def _make_shards(self) -> list[Shard]:
        """One shard per device of the mesh (`device_turns`), else one shard over the whole
        mesh; data-parallel populations are one shard, since their every gradient step
        averages over all devices."""
        groups, per_member = self.groups, self.envs_per_member
        slices = [slice(g * per_member // groups, (g + 1) * per_member // groups) for g in range(groups)]
        mesh = self.members.mesh
        if not self.device_turns:
            return [Shard(0, slice(0, self.num_members), self.members.sharding, slices)]
        size = self.num_members // mesh.size  # jax.distributed: only this process's devices
        local = [(d, device) for d, device in enumerate(mesh.devices.flat)
                 if device.process_index == jax.process_index()]
        return [Shard(i, slice(d * size, (d + 1) * size), jax.sharding.SingleDeviceSharding(device), slices)
                for i, (d, device) in enumerate(local)]

    def _build(self, deterministic: bool) -> None:
        """The per-member functions of `self.algo` (data-parallel: its gradient-syncing rebuild)."""
        algo = self.algo

        def act(view, obs, hp):  # one group's decision; the key goes back, not the state
            key, act_key, _ = step_keys(view.key)
            env_action, record = algo.policy(view, obs, act_key, hp)
            return key, env_action, record

        def lagged_view(view):  # a copy that outlives the state `learn` is about to consume
            view = jax.tree.map(jnp.copy, view)
            return view._replace(key=jax.random.fold_in(view.key, LAGGED_ACT_STREAM))

        env = self.wrapped_env
        feed = lambda obs: env.default_params._replace(obs=obs)  # noqa: E731  the stand-in hands them out

        def observe(env_state, host_step):  # the wrappers over one step of a member's envs
            obs, env_state, reward, _, _, info = env.step(None, env_state, host_step, feed(None))
            return env_state, obs, reward, info["final_observation"]

        def observe_reset(env_state, obs, fresh):  # fresh: new statistics, else the state's kept
            obs, reset_state = env.reset(None, feed(obs)) if fresh else env.reset_from(None, feed(obs), env_state)
            return reset_state, obs

        def eval_act(state, obs, key, step):
            key = jax.random.fold_in(key, step)  # a fresh key per step, inside the compiled call
            if env is not None:  # normalised with the training statistics, frozen
                obs = env.reset_from(None, feed(obs), algo.env_state(state))[0]
            return algo.act(algo.policy_params(state), obs, key, deterministic)

        self._functions = {"act": (act, False), "lagged_view": (lagged_view, False),
                           "spend_reset_key": (lambda key: reset_key(key)[0], False),
                           "learn": (algo.learn, True), "observe": (observe, False),
                           "observe_reset": (lambda env_state, obs: observe_reset(env_state, obs, False), False),
                           "observe_first_reset": (lambda env_state, obs: observe_reset(env_state, obs, True), False)}
        self._after_reset = self.members.per_member(algo.after_env_reset, 1, donate=True)
        self._eval_act = self.members.per_member(eval_act, 4)

    def _shard_program(self, name: str, num_args: int) -> Any:
        """A per-member function for one shard: jitted and vmapped over its members on its device
        (device turns), else the population's shard_map over the whole mesh (data-parallel: with
        its gradient syncing)."""
        fn, donate = self._functions[name]
        if not self.device_turns:
            return self.members.per_member(fn, num_args, donate=donate)
        return jax.jit(jax.vmap(fn, axis_name=MEMBER_AXIS), donate_argnums=(0,) if donate else ())

    def _view(self, state: Any) -> Any:
        """What the policy may read of the state: all of it but the replay buffer."""
        field = self.algo.spec.replay_field
        return state if field is None else state._replace(**{field: None})

    # ---- shards of the population's arrays ----------------------------------------------
    def _split(self, tree: Any) -> list[Any]:
        """A population tree as one tree per shard (each device's own part, nothing copied)."""
        if not self.device_turns:
            return [tree]
        per_leaf = jax.tree.map(self._local_parts, tree)
        return [jax.tree.map(lambda p, i=i: p[i], per_leaf, is_leaf=lambda p: isinstance(p, list))
                for i in range(len(self.shards))]

    def _local_parts(self, x: jax.Array) -> list[jax.Array]:
        """This process's parts of a population array, in member order (one per local device)."""
        order = {device: d for d, device in enumerate(self.members.mesh.devices.flat)}
        return [s.data for s in sorted(x.addressable_shards, key=lambda s: order[s.device])]

    def _local(self, x: jax.Array) -> np.ndarray:
        """This process's members of a population array, as one host array."""
        return np.concatenate([np.asarray(part) for part in self._local_parts(x)])

    def _global(self, local: Any) -> Any:
        """Host arrays of this process's members as population arrays (every process gives its
        own members' part); a single process's arrays as they are."""
        if jax.process_count() == 1:
            return local
        sharding = self.members.sharding
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local)

    @property
    def _local_members(self) -> slice:
        return slice(self.shards[0].members.start, self.shards[-1].members.stop)

    def _join(self, parts: list[Any]) -> Any:
        """The shards' trees as one population tree on the mesh (nothing copied)."""
        if not self.device_turns:
            return parts[0]
        sharding = self.members.sharding
        return jax.tree.map(
            lambda *xs: jax.make_array_from_single_device_arrays(
                (self.num_members,) + xs[0].shape[1:], sharding, list(xs)), *parts)

    # ---- envs ---------------------------------------------------------------------------
    def _open(self, shard: Shard) -> list[HostVecEnv]:
        if not shard.envs:
            per_group = shard.size * (self.envs_per_member // self.groups)
            shard.envs = [self.open_env(per_group) for _ in range(self.groups)]
        return shard.envs

    def _reset(self, stream: int, index: int, shards: Sequence[Shard] | None = None) -> None:
        """Fresh episodes in every training env; GRPO-style groups share a seed."""
        groups = max(self.algo.spec.reset_groups, 1)
        count = self.envs_per_member // groups
        seeds = np.stack([np.repeat(env_seeds(self.seed, stream, int(m), index, count), groups)
                          for m in self.members.seed_index])  # a member's envs follow its seed, not its setting
        for shard in shards or self.shards:
            mine = seeds[shard.members]
            shard.obs = [env.reset(mine[:, envs].reshape(-1)).reshape((shard.size, -1) + self.observation_space.shape)
                         for env, envs in zip(self._open(shard), shard.group_slices)]
            shard.unobserved_reset = self.wrapped_env is not None

    def close(self) -> None:
        for shard in self.shards:
            shard.close()
        if self.eval_env is not None:
            self.eval_env.close()
        self.eval_env = None

    # ---- the Driver interface -----------------------------------------------------------
    def init(self, keys: chex.Array, hparams: Any) -> Any:
        state = self.members.init(keys, hparams)
        self._updates = 0
        for shard in self.shards:
            shard.fresh_stats = True
        if not self.algo.spec.reset_groups:
            self._reset(TRAIN_STREAM, 0)
        return state

    def _abstract_obs(self, members: int, per_member: int, sharding: Any) -> jax.ShapeDtypeStruct:
        space = self.observation_space
        return jax.ShapeDtypeStruct((members, per_member) + tuple(space.shape), space.dtype, sharding=sharding)

    def compile(self, state: Any, hparams: Any) -> float:
        """Compiles each shard's act and learn and (with evaluation) the greedy act ahead of the
        first chunk."""
        for shard, part, hp in zip(self.shards, self._split(state), self._split(hparams)):
            self._compile_shard(shard, part, hp)
        if self.can_evaluate:
            members = self.members
            keys = members.place(jnp.zeros((self.num_members, 2), jnp.uint32))
            members.compiled("eval_act", self._eval_act, state,
                             self._abstract_obs(self.num_members, self.eval_episodes, members.sharding),
                             keys, self._steps(0))
        return self.members.compile_seconds

    def _compile_shard(self, shard: Shard, state: Any, hparams: Any) -> None:
        members, view = self.members, self._view(state)
        compiled = lambda name, *args: members.compiled(  # noqa: E731  one program per shard
            f"{name}@{shard.index}", self._shard_program(name, len(args)), *args)
        obs = self._abstract_obs(shard.size, self.envs_per_member // self.groups, shard.sharding)
        shard.programs["act"] = compiled("act", view, obs, hparams)
        if self.learn_while_stepping:
            shard.programs["lagged_view"] = compiled("lagged_view", view)
        if self.algo.spec.reset_groups:
            shard.programs["spend_reset_key"] = compiled("spend_reset_key", state.key)
        _, _, record = shard.programs["act"].out_info
        steps = self._abstract_steps(self._abstract_obs(shard.size, self.envs_per_member, shard.sharding),
                                     record, shard.sharding)
        shard.programs["learn"] = compiled("learn", state, steps, hparams)
        shard.buffers = [RolloutBuffer(steps) for _ in range(2)]
        if self.wrapped_env is not None:
            env_state, obs = self.algo.env_state(view), steps.obs
            first = jax.ShapeDtypeStruct(obs.shape[:1] + obs.shape[2:], obs.dtype, sharding=shard.sharding)
            flat = lambda x: jax.ShapeDtypeStruct(x.shape[:1] + x.shape[2:], x.dtype, sharding=x.sharding)  # noqa: E731
            host_step = HostStep(first, flat(steps.reward), flat(steps.terminated), flat(steps.truncated),
                                 first, None, None, None)
            shard.programs["observe"] = compiled("observe", env_state, host_step)
            for name in ("observe_reset", "observe_first_reset"):
                shard.programs[name] = compiled(name, env_state, first)

    def _abstract_steps(self, obs: jax.ShapeDtypeStruct, record: Any, sharding: Any) -> Steps:
        """[M, T, E, ...] shapes of one update's `Steps` (records given for one group)."""
        envs, steps = self.envs_per_member, self.algo.spec.rollout_steps
        time_major = lambda s: jax.ShapeDtypeStruct(  # noqa: E731  [M, E, ...] -> [M, T, E, ...]
            s.shape[:1] + (steps, envs) + s.shape[2:], s.dtype, sharding=sharding)
        flag = jax.ShapeDtypeStruct(obs.shape[:2], jnp.bool_)
        return Steps(time_major(obs), jax.tree.map(time_major, record),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.float32)),
                     time_major(flag), time_major(flag), time_major(obs), time_major(flag),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.float32)),
                     time_major(jax.ShapeDtypeStruct(obs.shape[:2], jnp.int32)))

    def train_chunk(self, state: Any, hparams: Any, num_updates: int) -> tuple[Any, dict]:
        """`num_updates` updates of every member: the shards in turns, each update a host
        rollout then one `learn` that runs while the next shard's envs step."""
        start = time.perf_counter()
        if self._updates is None:  # continuing a restored run: its envs are gone
            self._updates = int(self._local(state.update_step).reshape(-1)[0])
            if not self.algo.spec.reset_groups:
                self._reset(RESUME_STREAM, self._updates)
                state = self._after_reset(state)
        parts, hps = self._split(state), self._split(hparams)
        metrics: list[list[dict]] = [[] for _ in self.shards]
        for _ in range(num_updates):
            for shard in self.shards:
                parts[shard.index] = self._update(shard, parts[shard.index], hps[shard.index],
                                                  metrics[shard.index])
            self._updates += 1
        for shard in self.shards:  # a chunk ends with every rollout learned from
            if shard.waiting is not None:
                parts[shard.index] = self._learn(shard, parts[shard.index], shard.waiting, hps[shard.index],
                                                 metrics[shard.index])
                shard.waiting = None
        state, reduced = self._join(parts), self._reduce(metrics)
        self._time.total += time.perf_counter() - start
        return state, reduced

    def _update(self, shard: Shard, state: Any, hparams: Any, metrics: list[dict]) -> Any:
        """One update of a shard: its rollout, then its `learn` dispatched (it runs while the
        next shard's envs step); learning while stepping, the previous rollout's `learn`."""
        programs = shard.programs
        if self.algo.spec.reset_groups:  # fresh grouped resets, a reset key spent as on device
            self._reset(GROUP_STREAM, self._updates, [shard])
            state = state._replace(key=programs["spend_reset_key"](state.key))
        buffer = shard.buffers[self._updates % 2]
        if shard.waiting is not None:  # learn from the last rollout while acting with a copy from before
            view = programs["lagged_view"](self._view(state))
            state = self._learn(shard, state, shard.waiting, hparams, metrics)
            state = state._replace(env_state=self._rollout(shard, view, hparams, buffer).env_state)
        else:
            rolled = self._rollout(shard, self._view(state), hparams, buffer)
            state = state._replace(key=rolled.key, env_state=rolled.env_state)
        start = time.perf_counter()
        steps = shard.place(buffer.steps)
        self._time.device += time.perf_counter() - start
        if self.learn_while_stepping:
            shard.waiting = steps
            return state
        return self._learn(shard, state, steps, hparams, metrics)

    def _learn(self, shard: Shard, state: Any, steps: Steps, hparams: Any, metrics: list[dict]) -> Any:
        start = time.perf_counter()
        state, update_metrics = shard.programs["learn"](state, steps, hparams)
        self._time.device += time.perf_counter() - start
        metrics.append(update_metrics)
        return state

    def _reduce(self, metrics: list[list[dict]]) -> dict:
        """The chunk's per-update metrics of every shard, fetched once and reduced over the
        updates as `reduce_chunk` does: [num_members] arrays."""
        start = time.perf_counter()
        fetched = jax.device_get(metrics)
        self._time.device += time.perf_counter() - start
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for updates in zip(*fetched):  # one update of every shard
            for name in updates[0]:
                value = np.concatenate([np.asarray(u[name], np.float64).reshape(-1) for u in updates])
                defined = ~np.isnan(value)
                sums[name] = sums.get(name, 0.0) + np.where(defined, value, 0.0)
                counts[name] = counts.get(name, 0.0) + defined
        return self._global(jax.device_get(reduce_chunk(sums, counts)))

    def _rollout(self, shard: Shard, view: Any, hparams: Any, buffer: RolloutBuffer) -> Any:
        """`rollout_steps` steps of a shard's envs into `buffer`, its env groups stepping in
        turns; returns `view` with its key advanced past the rollout (normalising: and its
        `env_state` holding the updated statistics)."""
        steps, envs, timer, act = self.algo.spec.rollout_steps, self._open(shard), self._time, shard.programs["act"]
        if shard.unobserved_reset:
            view = self._observe_reset(shard, view)

        def decide(group: int, t: int) -> None:  # group's actions for step t, sent to its envs
            nonlocal view
            obs = shard.obs[group]
            start = time.perf_counter()  # a call can wait for the device before it returns
            key, env_action, record = act(view, shard.feed(obs), hparams)
            env_action, record = np.asarray(env_action), jax.tree.map(np.asarray, record)
            timer.device += time.perf_counter() - start
            view = view._replace(key=key)
            envs[group].step_async(env_action.reshape((-1,) + env_action.shape[2:]))
            buffer.decision(t, shard.group_slices[group], obs, record)  # while the envs step

        for group in range(self.groups):
            decide(group, 0)
        for t in range(steps):
            for group, env in enumerate(envs):
                start = time.perf_counter()
                result = env.step_wait()
                timer.env += time.perf_counter() - start
                if self.wrapped_env is not None:
                    view, result = self._observe(shard, view, result)
                buffer.outcome(t, shard.group_slices[group], result)
                shard.obs[group] = result.obs.reshape((shard.size, -1) + result.obs.shape[1:])
                if t + 1 < steps:
                    decide(group, t + 1)
        return view

    def _observe(self, shard: Shard, view: Any, result: HostStep) -> tuple[Any, HostStep]:
        """A step of a shard's envs through the normalising wrappers: `view` with the updated
        statistics, and the step with normalised observations and scaled rewards."""
        start = time.perf_counter()
        by_member = lambda x: shard.feed(x.reshape((shard.size, -1) + x.shape[1:]))  # noqa: E731
        host_step = HostStep(by_member(result.obs), by_member(result.reward), by_member(result.terminated),
                             by_member(result.truncated), by_member(result.final_obs), None, None, None)
        env_state, obs, reward, final_obs = shard.programs["observe"](self.algo.env_state(view), host_step)
        flat = lambda x: np.asarray(x).reshape((-1,) + x.shape[2:])  # noqa: E731
        result = result._replace(obs=flat(obs), reward=flat(reward), final_obs=flat(final_obs))
        self._time.device += time.perf_counter() - start
        return view._replace(env_state=env_state), result

    def _observe_reset(self, shard: Shard, view: Any) -> Any:
        """A shard's fresh resets through the wrappers (new statistics after `init`, else the
        state's kept): `view` with them, and `shard.obs` normalised."""
        start = time.perf_counter()
        name = "observe_first_reset" if shard.fresh_stats else "observe_reset"
        env_state, obs = shard.programs[name](self.algo.env_state(view), shard.feed(shard.obs[0]))
        shard.obs, shard.fresh_stats, shard.unobserved_reset = [np.asarray(obs)], False, False
        self._time.device += time.perf_counter() - start
        return view._replace(env_state=env_state)

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
        mine = self._local_members  # jax.distributed: each process steps its own members' envs
        members = mine.stop - mine.start
        if self.eval_env is None:
            self.eval_env = self.open_env(members * self.eval_episodes)
        raw = np.asarray(jax.device_get(keys)).reshape(self.num_members, -1)[mine]
        seeds = np.stack([np.random.SeedSequence([int(x) for x in row]).generate_state(self.eval_episodes)
                          for row in raw]).astype(np.int64)
        by_member = lambda flat: flat.reshape((members, -1) + flat.shape[1:])  # noqa: E731
        obs = by_member(self.eval_env.reset(seeds.reshape(-1)))
        feed = lambda x: self.members.place(self._global(x))  # noqa: E731
        keys = self.members.place(keys)
        act = self.members.compiled("eval_act", self._eval_act, state, feed(obs), keys, self._steps(0))
        finished = np.zeros(seeds.size, bool)
        returns, partial = np.zeros(seeds.size), np.zeros(seeds.size)
        for t in range(self.eval_max_steps):
            action = self._local(act(state, feed(obs), keys, self._steps(t)))
            result = self.eval_env.step(action.reshape((-1,) + action.shape[2:]))
            first_end = result.episode_done & ~finished
            returns[first_end] = result.episode_return[first_end]
            partial = np.where(finished, partial, result.episode_return)
            finished |= result.episode_done
            obs = by_member(result.obs)
            if self._all_processes(finished.all()):
                break
        return self._global(by_member(np.where(finished, returns, partial)))

    def _all_processes(self, flag: bool) -> bool:
        """Whether `flag` holds in every process (each decides on its own members' envs)."""
        if jax.process_count() == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))
