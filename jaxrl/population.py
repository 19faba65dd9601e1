"""The population driver: many agents of one algorithm trained in one compiled program.

Seeds (and per-member hyperparameters) form a leading *population* axis. The state is
sharded over a 1-D device mesh along that axis (`AXIS`); each device runs `vmap` over its
members (`MEMBER_AXIS`) inside `shard_map`, so no data crosses devices — except in
data-parallel mode, where every gradient step averages the gradients of all members over
both axes (`Population.use_data_parallel`). The host calls one compiled function per
chunk of updates, which returns per-member metrics already reduced over the chunk, so
host memory grows with members x chunks, never with steps.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxrl import combine
from jaxrl.algos.base import Algorithm, GradSync
from jaxrl.errors import ConfigError

AXIS = "pop"  # the device mesh's axis
MEMBER_AXIS = "member"  # the vmap over one device's members, inside shard_map over AXIS


class ChunkReport(NamedTuple):
    """What the host learns after each chunk; metrics are per member, shape [P]."""

    chunk: int
    updates_done: int
    env_steps: int  # per member
    seconds: float  # wall time of this chunk (steady state: compile is excluded)
    metrics: dict[str, np.ndarray]
    eval_returns: np.ndarray | None  # [P, episodes] when evaluated after this chunk
    eval_seconds: float = 0.0
    env_seconds: float | None = None  # host envs: time spent stepping them (None: jittable)


class RunResult(NamedTuple):
    state: Any  # final training state, leading axis P
    reports: list[ChunkReport]
    final_eval_returns: np.ndarray | None  # [P, episodes]
    compile_seconds: float
    steady_sps: float  # env steps per second, all members together, compile excluded
    num_devices: int


def member_keys(seed: int, num_members: int) -> chex.Array:
    """Member i's key depends on (seed, i) only, so it is the same in any population size."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_members))


INIT_STREAM, EVAL_STREAM = 0, 1


def stream_keys(seed: int, num_members: int, stream: int,
                seed_index: np.ndarray | None = None) -> chex.Array:
    """Independent key streams per member: `INIT_STREAM` for `init`, `EVAL_STREAM` for evaluation.
    With `seed_index`, member m takes the keys of seed `seed_index[m]` (members of different
    hyperparameter settings share their seeds' keys)."""
    if seed_index is not None:
        return stream_keys(seed, int(np.max(seed_index)) + 1, stream)[np.asarray(seed_index)]
    return jax.vmap(lambda k: jax.random.fold_in(k, stream))(member_keys(seed, num_members))


def broadcast_hparams(hparams: Any, num_members: int) -> Any:
    """Gives every hyperparameter leaf a leading population axis: one value (a scalar, or a
    leading axis of 1) is shared by every member, `num_members` values are kept as they are,
    and any other count is refused, naming the field, rather than padded or left to vmap.
    A list of numbers counts as one leaf (`hp._replace(lr=[3e-4, 1e-4])`)."""
    def one_leaf(path: Any, x: Any) -> chex.Array:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim == 0 or x.shape[0] == 1:
            return jnp.broadcast_to(x, (num_members,) + x.shape[1:])
        if x.shape[0] != num_members:
            raise ValueError(f"hparams{jax.tree_util.keystr(path)} has {x.shape[0]} values for "
                             f"{num_members} members; give one value or one per member")
        return x

    number_list = lambda x: (isinstance(x, list) and len(x) > 0
                             and all(isinstance(v, (int, float)) for v in x))
    return jax.tree_util.tree_map_with_path(one_leaf, hparams, is_leaf=number_list)


def population_mesh(num_members: int, devices: Sequence[Any] | None = None,
                    pad: bool = True) -> jax.sharding.Mesh:
    """A 1-D mesh for a population: over every device (at most one per member) when the
    population may be padded to a multiple of the device count, else over as many devices as
    divide it evenly."""
    devices = list(devices if devices is not None else jax.devices())
    if pad:
        count = min(len(devices), num_members)
    else:
        count = max(d for d in range(1, len(devices) + 1) if num_members % d == 0)
    # Auto axes (not jax.make_mesh's default Explicit) so that slicing off the padding members
    # is an ordinary index, also on arrays that span processes.
    return jax.make_mesh((count,), (AXIS,), devices=devices[:count],
                         axis_types=(jax.sharding.AxisType.Auto,))


def padded_size(num_members: int, per_call: int) -> int:
    """Members actually computed: a whole number of calls of `per_call` members each."""
    return math.ceil(num_members / per_call) * per_call


def pad_members(tree: Any, size: int) -> Any:
    """Extends every leaf's leading (member) axis to `size` by repeating its last member.
    Padding members train like the others but are never reported or saved."""
    def pad(x):
        missing = size - x.shape[0]
        if missing <= 0:
            return x
        xnp = jnp if isinstance(x, jax.Array) else np  # device arrays stay on the device
        return xnp.concatenate([x, xnp.repeat(x[-1:], missing, axis=0)])
    return jax.tree.map(pad, tree)


def member_mean(num_members: int) -> GradSync:
    """Data-parallel gradients: the mean over the real members of the whole population (every
    device along `AXIS`, every member along `MEMBER_AXIS`); the padding members past
    `num_members` weigh 0. Only valid inside `Population`'s shard_map and vmap, with the
    population in one call (member m sits at device m // per_device, position m % per_device)."""
    def sync(grads: Any) -> Any:
        per_device = jax.lax.psum(1, MEMBER_AXIS)
        index = jax.lax.axis_index(AXIS) * per_device + jax.lax.axis_index(MEMBER_AXIS)
        weight = (index < num_members).astype(jnp.float32)
        return jax.tree.map(
            lambda g: (jax.lax.psum(g * weight, (AXIS, MEMBER_AXIS)) / num_members).astype(g.dtype), grads)
    return sync


def _reduce_chunk(sums: dict[str, chex.Array], counts: dict[str, chex.Array]) -> dict[str, chex.Array]:
    """Per-update means over the updates where a metric was defined (not NaN), and
    per-episode means for `episode_*` sums (NaN if none ended)."""
    episodes = sums.get("episodes", jnp.float32(0))
    out = {}
    for name, total in sums.items():
        if name.startswith("episode_"):
            out[name] = jnp.where(episodes > 0, total / jnp.maximum(episodes, 1), jnp.nan)
        elif name == "episodes":
            out[name] = total
        else:
            out[name] = jnp.where(counts[name] > 0, total / jnp.maximum(counts[name], 1), jnp.nan)
    return out


class Population:
    """Compiled functions for one algorithm over `num_members` agents on a device mesh.

    `init`, `train_chunk` and `evaluate` are compiled once (ahead of time, so compile time
    is measured apart from run time) and reused for every chunk. A population that does not
    divide the device count is padded (`pad`; padding members are computed, never reported).
    With `max_members_per_call` below the population size, the population is split into
    equal sub-populations that run one after another through the same compiled program
    (each still vmapped and sharded), their states kept in host memory between calls: how a
    population larger than device memory trains. Member results do not depend on either.
    `data_parallel=True` (or `use_data_parallel()`) makes the members one learner.
    `programs`, a dict shared between populations that build the very same programs (a
    sweep's batches of one static setting: only their hyperparameter values and keys, which
    are inputs, differ), lets a later population reuse the compiled programs of an earlier one
    instead of tracing and compiling them again; the caller vouches for the sameness.
    """

    def __init__(self, algo: Algorithm, num_members: int, *, devices: Sequence[Any] | None = None,
                 evaluator: Callable[[Any, chex.PRNGKey], chex.Array] | None = None,
                 pad: bool = True, max_members_per_call: int | None = None,
                 seed_index: np.ndarray | None = None, data_parallel: bool = False,
                 programs: dict | None = None):
        self.algo, self.num_members = algo, num_members
        self.seed_index = np.arange(num_members) if seed_index is None else np.asarray(seed_index)
        devices = list(devices if devices is not None else jax.devices())
        per_call = num_members
        if max_members_per_call is not None and max_members_per_call < num_members:
            if not pad:
                raise ValueError("splitting a population into calls needs pad=True")
            width = max(1, min(len(devices), max_members_per_call))
            calls = math.ceil(num_members / max(width, max_members_per_call // width * width))
            per_call = math.ceil(num_members / calls)
        self.mesh = population_mesh(per_call, devices, pad)
        self.members_per_call = padded_size(per_call, self.mesh.size) if pad else per_call
        self.calls = math.ceil(num_members / self.members_per_call)
        self.padded_members = self.calls * self.members_per_call
        self.sharding = NamedSharding(self.mesh, P(AXIS))
        self.evaluator = evaluator
        self.can_evaluate = evaluator is not None
        self.compile_seconds = 0.0
        self.data_parallel = False
        self._compiled: dict[str, Any] = {}
        self._programs = programs
        self._build()
        if data_parallel:
            self.use_data_parallel()

    def _build(self) -> None:
        """The jitted (not yet compiled) programs of `self.algo` over the mesh."""
        algo, spec = self.algo, P(AXIS)

        def chunk(state, hparams, num_updates):
            def one_member(state, hp):
                _, metric_shapes = jax.eval_shape(algo.update, state, hp)
                zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)

                def body(_, carry):
                    state, sums, counts = carry
                    state, metrics = algo.update(state, hp)
                    defined = jax.tree.map(lambda x: ~jnp.isnan(x), metrics)
                    sums = jax.tree.map(lambda s, x, d: s + jnp.where(d, x, 0), sums, metrics, defined)
                    counts = jax.tree.map(lambda c, d: c + d, counts, defined)
                    return state, sums, counts

                counts = jax.tree.map(lambda z: jnp.zeros(z.shape, jnp.float32), zeros)
                state, sums, counts = jax.lax.fori_loop(0, num_updates, body, (state, zeros, counts))
                return state, _reduce_chunk(sums, counts)

            return jax.vmap(one_member, axis_name=MEMBER_AXIS)(state, hparams)

        sharded_chunk = jax.shard_map(chunk, mesh=self.mesh, in_specs=(spec, spec, P()),
                                      out_specs=spec, check_vma=False)
        self._chunk = jax.jit(sharded_chunk, donate_argnums=0)
        self._init = jax.jit(
            jax.shard_map(jax.vmap(algo.init), mesh=self.mesh, in_specs=(spec, spec),
                          out_specs=spec, check_vma=False))
        if self.evaluator is not None:
            self._evaluate = jax.jit(jax.shard_map(jax.vmap(self.evaluator), mesh=self.mesh,
                                                   in_specs=(spec, spec), out_specs=spec, check_vma=False))

    def use_data_parallel(self) -> None:
        """Data-parallel mode: one learner fed by every member's experience. Every gradient
        step averages the gradients of all real members (`member_mean`; padding weighs nothing)
        before the optimiser, and `init` gives every member member 0's networks and optimiser
        state, so the members stay identical while each collects experience from its own envs
        with its own keys. The population must run in one call (not split: gradients cannot be
        averaged across calls) and the algorithm must offer `with_grad_sync`. Call it before the
        run starts; programs compiled so far are dropped."""
        if self.data_parallel:
            return
        if self.algo.with_grad_sync is None:
            raise ConfigError(f"{self.algo.name} cannot run data-parallel (its Algorithm has no "
                              f"with_grad_sync); choose another combine.strategy")
        if self.split:
            raise ConfigError(f"combine.strategy data_parallel averages gradients over the whole population "
                              f"in one call, but {self.num_members} members run in {self.calls} calls of "
                              f"{self.members_per_call} (memory or --max-population-chunk); use fewer seeds "
                              f"or env.num_envs, more devices, or drop --max-population-chunk")
        self.algo = self.algo.with_grad_sync(member_mean(self.num_members))
        self.data_parallel = True
        self._compiled.clear()
        self._build()

    @property
    def split(self) -> bool:
        """Whether the population runs as several sub-populations, its state on the host."""
        return self.calls > 1

    def _compiled_fn(self, name: str, fn: Any, *args: Any) -> Any:
        """`fn` compiled for `args` once: by this population, or by an earlier one that
        shares `programs` and ran the same shapes."""
        if name not in self._compiled:
            shared_key = (name, self.num_members, self.members_per_call, self.calls, self.data_parallel)
            if self._programs is not None and shared_key in self._programs:
                self._compiled[name] = self._programs[shared_key]
                return self._compiled[name]
            start = time.perf_counter()
            self._compiled[name] = fn.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - start
            if self._programs is not None:
                self._programs[shared_key] = self._compiled[name]
        return self._compiled[name]

    def _one_call(self, tree: Any) -> Any:
        """Shapes of one call's share of a padded population tree, sharded over the mesh."""
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.members_per_call,) + x.shape[1:],
                                                           x.dtype, sharding=self.sharding), tree)

    def _per_call(self, name: str, fn: Any, members: tuple, shared: tuple = ()) -> Any:
        """Runs compiled `fn` over the population: once on device-resident inputs, or (split)
        once per sub-population, moving each share to the devices and its outputs back to
        host arrays. `members` have a leading padded member axis; `shared` go to every call."""
        if not self.split:
            return self._compiled_fn(name, fn, *members, *shared)(*members, *shared)
        compiled = self._compiled_fn(name, fn, *(self._one_call(t) for t in members), *shared)
        outputs = []
        for call in range(self.calls):
            share = slice(call * self.members_per_call, (call + 1) * self.members_per_call)
            placed = jax.device_put(jax.tree.map(lambda x: x[share], members), self.sharding)
            outputs.append(self.fetch(compiled(*placed, *shared)))
        return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)

    def abstract_state(self, keys: chex.Array, hparams: Any) -> Any:
        """Shapes and dtypes of the real members' state, as checkpoints hold it (nothing is
        computed). Shardings say where a restore should put it: the population's own when it
        is unpadded, replicated over the mesh when padding follows, none (host memory) when split."""
        keys, hparams = self.place(keys), self.place(hparams)
        shapes = jax.eval_shape(self._init, *(self._one_call(t) for t in (keys, hparams)))
        if self.split:
            sharding = None
        elif self.padded_members == self.num_members:
            sharding = self.sharding
        else:
            sharding = NamedSharding(self.mesh, P())
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct((self.num_members,) + s.shape[1:], s.dtype,
                                                           sharding=sharding), shapes)

    def program_bytes(self, hparams: Any) -> int | None:
        """Device memory one chunk call needs on each device — state, rollouts, replay
        batches, gradients: XLA's own analysis of the compiled program (which `compile` then
        reuses). None when the backend does not say."""
        keys = self._one_call(jax.ShapeDtypeStruct((self.padded_members, 2), jnp.uint32))
        hparams = self._one_call(hparams)
        state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding),
                             jax.eval_shape(self._init, keys, hparams))
        analysis = self._compiled_fn("chunk", self._chunk, state, hparams, jnp.int32(1)).memory_analysis()
        if analysis is None:
            return None
        return int(analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
                   + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)

    def compile(self, state: Any, hparams: Any) -> float:
        """Compiles the chunk (and evaluation) ahead of the first call; returns total compile seconds."""
        if self.split:
            state, hparams = self._one_call(state), self._one_call(hparams)
        self._compiled_fn("chunk", self._chunk, state, hparams, jnp.int32(1))
        if self.evaluator is not None:
            keys = self._one_call(jax.ShapeDtypeStruct((self.padded_members, 2), jnp.uint32))
            self._compiled_fn("evaluate", self._evaluate, state, keys)
        return self.compile_seconds

    def place(self, tree: Any) -> Any:
        """A pytree with a leading population axis, padded, on the mesh (split: in host memory)."""
        tree = pad_members(tree, self.padded_members)
        if self.split:
            return jax.tree.map(lambda x: np.array(x), tree)
        if jax.process_count() > 1:  # global arrays are built from host data every process holds
            tree = jax.tree.map(lambda x: x if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1
                                else np.asarray(x), tree)
        return jax.device_put(tree, self.sharding)

    def fetch(self, tree: Any) -> Any:
        """A population tree as host numpy arrays, gathered from every process when the mesh
        spans several (jax.distributed)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)
        return jax.device_get(tree)

    def unpad(self, tree: Any) -> Any:
        """The real members of a padded population tree (what is reported and saved)."""
        if self.padded_members == self.num_members:
            return tree
        return jax.tree.map(lambda x: x[:self.num_members], tree)

    def from_saved(self, state: Any) -> Any:
        """A saved (unpadded) state, padded and placed for this population."""
        if self.padded_members == self.num_members and not self.split:
            return state
        return self.place(self.fetch(state))

    def init(self, keys: chex.Array, hparams: Any) -> Any:
        """Every member's initial state (data-parallel: all with member 0's networks)."""
        state = self._per_call("init", self._init, (self.place(keys), self.place(hparams)))
        if self.data_parallel:
            state = jax.device_put(jax.jit(combine.fixed_member, static_argnums=1)(state, 0), self.sharding)
        return state

    def train_chunk(self, state: Any, hparams: Any, num_updates: int) -> tuple[Any, dict]:
        """Runs `num_updates` updates of every member; `state` is donated (do not reuse it).
        Metrics come back for the padded population (`unpad` them)."""
        return self._per_call("chunk", self._chunk, (state, hparams), (jnp.int32(num_updates),))

    def take_env_seconds(self) -> float | None:
        """Env-stepping seconds since the last call; None: envs step inside the program."""
        return None

    def close(self) -> None:
        """Frees what the population holds outside JAX (host envs); nothing here."""

    def evaluate(self, state: Any, keys: chex.Array) -> chex.Array:
        """Evaluation returns of the real members, [num_members, episodes]."""
        if self.evaluator is None:
            raise ValueError("this Population was built without an evaluator")
        return self.unpad(self._per_call("evaluate", self._evaluate, (state, self.place(keys))))


def run(algo: Algorithm, num_members: int, *, seed: int = 0, hparams: Any = None,
        updates_per_chunk: int = 10, evaluator: Callable | None = None,
        eval_every_chunks: int = 0, devices: Sequence[Any] | None = None,
        max_members_per_call: int | None = None, seed_index: np.ndarray | None = None,
        on_chunk: Callable[[ChunkReport], None] | None = None,
        on_start: Callable[["Population"], None] | None = None,
        restore: Callable[["Population", Any], tuple[Any, int] | None] | None = None,
        after_chunk: Callable[[ChunkReport, Any, Any], None] | None = None,
        between_chunks: Callable[[ChunkReport, Any, Any], tuple[Any, Any, dict]] | None = None,
        stop: Callable[[ChunkReport], bool] | None = None,
        population: Population | None = None) -> RunResult:
    """Trains `num_members` agents for `algo.num_updates` updates each and evaluates them.

    `hparams` defaults to `algo.default_hparams` for every member; give leaves a leading
    [num_members] axis to vary them. Evaluation runs after every `eval_every_chunks`-th
    chunk (0: only at the end) when an `evaluator` is given. `on_chunk` sees each report as
    soon as it is on the host (progress bars, loggers); `after_chunk(report, state)` may
    save the state and hyperparameters (checkpoints) before the next chunk takes them over.
    `between_chunks(report, state, hparams)` may change both between chunks (population-based
    training, combiners; `jaxrl.experiment.population_ops`) and returns `(state, hparams,
    extra per-member metrics for the report)`. `restore(population, abstract_state)` may return
    `(state, updates_done)` or `(state, updates_done, hparams)` to continue a run from a chunk
    boundary instead of starting afresh; the continuation is bit-for-bit the same run.
    `stop(report)` returning True ends the run after that chunk (a sweep whose trials were
    all pruned); the result then has no final evaluation.
    A ready `population` (e.g. `jaxrl.host_loop.HostPopulation`) replaces the default one
    built from `algo`, `evaluator`, `devices`, `max_members_per_call` and `seed_index` (see
    `Population`); `run` closes it at the end.
    """
    population = population or Population(algo, num_members, devices=devices, evaluator=evaluator,
                                          max_members_per_call=max_members_per_call,
                                          seed_index=seed_index)
    try:
        return _run(population, algo, num_members, seed, hparams, updates_per_chunk,
                    eval_every_chunks, on_chunk, on_start, restore, after_chunk, between_chunks, stop)
    finally:
        population.close()


def _run(population: Population, algo: Algorithm, num_members: int, seed: int, hparams: Any,
         updates_per_chunk: int, eval_every_chunks: int, on_chunk: Callable | None,
         on_start: Callable | None, restore: Callable | None, after_chunk: Callable | None,
         between_chunks: Callable | None = None, stop: Callable | None = None) -> RunResult:
    hparams = population.place(broadcast_hparams(
        algo.default_hparams if hparams is None else hparams, num_members))
    eval_keys = stream_keys(seed, num_members, EVAL_STREAM, population.seed_index)
    init_keys = stream_keys(seed, num_members, INIT_STREAM, population.seed_index)
    restored = restore(population, population.abstract_state(init_keys, hparams)) if restore else None
    if restored:
        state, updates_done = population.from_saved(restored[0]), restored[1]
        if len(restored) > 2 and restored[2] is not None:  # hyperparameters changed during the run (PBT)
            hparams = population.place(restored[2])
    else:
        state, updates_done = population.init(init_keys, hparams), 0
    if updates_done % updates_per_chunk and updates_done < algo.num_updates:
        raise ValueError(f"a run can only continue from a chunk boundary; {updates_done} updates "
                         f"is not a multiple of {updates_per_chunk}")
    population.compile(state, hparams)
    if on_start is not None:
        on_start(population)

    num_chunks = math.ceil(algo.num_updates / updates_per_chunk)
    reports: list[ChunkReport] = []
    steady_seconds, steady_steps = 0.0, 0
    final_eval = None
    first = num_chunks if updates_done >= algo.num_updates else updates_done // updates_per_chunk
    for index in range(first, num_chunks):
        count = min(updates_per_chunk, algo.num_updates - updates_done)
        start = time.perf_counter()
        state, metrics = population.train_chunk(state, hparams, count)
        metrics = population.fetch(population.unpad(metrics))
        seconds = time.perf_counter() - start
        if index == first:  # the first call still pays one-off costs (thread pools, allocation)
            seconds_first = seconds
        else:
            steady_seconds += seconds
            steady_steps += count * algo.env_steps_per_update * num_members
        updates_done += count
        last = index == num_chunks - 1
        eval_returns, eval_seconds = None, 0.0
        env_seconds = population.take_env_seconds()
        if population.can_evaluate and (last or (eval_every_chunks and (index + 1) % eval_every_chunks == 0)):
            chunk_key = jax.vmap(lambda k: jax.random.fold_in(k, index))(eval_keys)
            eval_start = time.perf_counter()
            eval_returns = np.asarray(population.fetch(population.evaluate(state, chunk_key)))
            eval_seconds = time.perf_counter() - eval_start
            final_eval = eval_returns if last else final_eval
        report = ChunkReport(index, updates_done, updates_done * algo.env_steps_per_update,
                             seconds, {k: np.asarray(v) for k, v in metrics.items()}, eval_returns,
                             eval_seconds, env_seconds)
        if between_chunks is not None:
            state, hparams, extra = between_chunks(report, state, hparams)
            report = report._replace(metrics={**report.metrics, **extra})
        reports.append(report)
        if on_chunk is not None:
            on_chunk(report)
        if after_chunk is not None:
            after_chunk(report, population.unpad(state), population.unpad(hparams))
        if stop is not None and stop(report) and not last:
            break
    if final_eval is None and population.can_evaluate and updates_done >= algo.num_updates:
        # restored from the final checkpoint (the run stopped before its summary): the final
        # evaluation again, with the last chunk's keys, so it equals the one that was lost
        chunk_key = jax.vmap(lambda k: jax.random.fold_in(k, num_chunks - 1))(eval_keys)
        final_eval = np.asarray(population.fetch(population.evaluate(state, chunk_key)))
    if steady_seconds == 0.0 and reports:  # a single chunk: the best we have is that chunk
        steady_seconds = seconds_first
        steady_steps = (updates_done - first * updates_per_chunk) * algo.env_steps_per_update * num_members
    return RunResult(population.unpad(state), reports, final_eval, population.compile_seconds,
                     steady_steps / steady_seconds if steady_seconds else float("nan"),
                     population.mesh.size)
