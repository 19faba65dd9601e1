"""The population driver: many agents of one algorithm trained in one compiled program.

Seeds (and per-member hyperparameters) form a leading *population* axis, sharded over a device
mesh (`jaxrl.members`: padding, splitting into calls, data-parallel mode). A `Driver` trains
all members a chunk of updates at a time: `Population` runs `algo.update` K times in one
compiled call (envs stepped inside the program), `jaxrl.host_loop.HostPopulation` steps host
envs around the same per-step policy and `learn`. Both return per-member metrics already
reduced over the chunk, so host memory grows with members x chunks, never with steps.
`run` drives either chunk by chunk.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxrl.algos.base import Algorithm
from jaxrl.members import (  # noqa: F401  (the mesh helpers are part of this module's API too)
    AXIS, MEMBER_AXIS, Members, member_mean, pad_members, padded_size, population_mesh,
)


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
    """Gives every hyperparameter leaf a leading population axis (leaves already [P] stay)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32),
                                                   (num_members,) + jnp.shape(x)[1:])
                        if jnp.ndim(x) == 0 else jnp.asarray(x, jnp.float32), hparams)


def reduce_chunk(sums: dict[str, chex.Array], counts: dict[str, chex.Array]) -> dict[str, chex.Array]:
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


class Driver(Protocol):
    """What `Run` needs of a population driver. `Population` (envs stepped inside the compiled
    program) and `jaxrl.host_loop.HostPopulation` (envs stepped on the host) are the two; both
    compose a `Members` for everything about where the members live."""

    # where the members live: mesh, padding, calls, place/fetch/unpad/from_saved,
    # abstract_state, seed_index, the compiled-program cache and its compile_seconds
    members: Members
    can_evaluate: bool

    def init(self, keys: chex.Array, hparams: Any) -> Any:
        """Every member's initial state, padded and placed (`hparams` placed)."""
        ...

    def compile(self, state: Any, hparams: Any) -> float:
        """Compiles what a chunk (and evaluation) runs, ahead of the first chunk; returns the
        total compile seconds."""
        ...

    def train_chunk(self, state: Any, hparams: Any, num_updates: int) -> tuple[Any, dict]:
        """`num_updates` updates of every member; `state` is donated (do not reuse it).
        Metrics come back per padded member, reduced over the chunk (`reduce_chunk`)."""
        ...

    def evaluate(self, state: Any, keys: chex.Array) -> Any:
        """Evaluation returns of the real members, [num_members, episodes]."""
        ...

    def take_env_seconds(self) -> float | None:
        """Env-stepping seconds since the last call; None: envs step inside the program."""
        ...

    def close(self) -> None:
        """Frees what the driver holds outside JAX (host envs)."""
        ...


class Population:
    """The driver for envs stepped inside the program: `algo.update` over `num_members`
    agents, a chunk of updates in one compiled call over the mesh. `devices`, `pad`,
    `max_members_per_call`, `seed_index`, `data_parallel` and `programs` lay the members out
    (see `jaxrl.members.Members`); member results depend on none of them.

    The chunk (and `evaluate`, given an `evaluator(state, key) -> returns` of one member) is
    compiled once, ahead of time so compile time is measured apart from run time, and reused
    for every chunk.
    """

    def __init__(self, algo: Algorithm, num_members: int, *, devices: Sequence[Any] | None = None,
                 evaluator: Callable[[Any, chex.PRNGKey], chex.Array] | None = None,
                 pad: bool = True, max_members_per_call: int | None = None,
                 seed_index: np.ndarray | None = None, data_parallel: bool = False,
                 programs: dict | None = None):
        self.members = Members(algo, num_members, devices=devices, pad=pad,
                               max_members_per_call=max_members_per_call, seed_index=seed_index,
                               data_parallel=data_parallel, programs=programs)
        self.algo = self.members.algo  # data-parallel: the gradient-averaging rebuild
        self.evaluator = evaluator
        self.can_evaluate = evaluator is not None
        self._chunk = self._chunk_program()
        if evaluator is not None:
            self._evaluate = self.members.per_member(evaluator, 2)

    def _chunk_program(self) -> Any:
        """`algo.update` K times per member, metrics summed where defined (jitted, not compiled)."""
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
                return state, reduce_chunk(sums, counts)

            return jax.vmap(one_member, axis_name=MEMBER_AXIS)(state, hparams)

        sharded_chunk = jax.shard_map(chunk, mesh=self.members.mesh, in_specs=(spec, spec, P()),
                                      out_specs=spec, check_vma=False)
        return jax.jit(sharded_chunk, donate_argnums=0)

    def _abstract_keys(self) -> Any:
        members = self.members
        return members.one_call(jax.ShapeDtypeStruct((members.padded_members, 2), jnp.uint32))

    def program_bytes(self, hparams: Any) -> int | None:
        """Device memory one chunk call needs on each device — state, rollouts, replay
        batches, gradients: XLA's own analysis of the compiled program (which `compile` then
        reuses). None when the backend does not say."""
        members = self.members
        hparams = members.one_call(hparams)
        state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=members.sharding),
                             jax.eval_shape(members.init_program, self._abstract_keys(), hparams))
        analysis = members.compiled("chunk", self._chunk, state, hparams, jnp.int32(1)).memory_analysis()
        if analysis is None:
            return None
        return int(analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
                   + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)

    def compile(self, state: Any, hparams: Any) -> float:
        """Compiles the chunk (and evaluation) ahead of the first call; returns total compile seconds."""
        members = self.members
        if members.split:
            state, hparams = members.one_call(state), members.one_call(hparams)
        members.compiled("chunk", self._chunk, state, hparams, jnp.int32(1))
        if self.evaluator is not None:
            members.compiled("evaluate", self._evaluate, state, self._abstract_keys())
        return members.compile_seconds

    def init(self, keys: chex.Array, hparams: Any) -> Any:
        """Every member's initial state (data-parallel: all with member 0's networks)."""
        return self.members.init(keys, hparams)

    def train_chunk(self, state: Any, hparams: Any, num_updates: int) -> tuple[Any, dict]:
        """Runs `num_updates` updates of every member; `state` is donated (do not reuse it).
        Metrics come back for the padded population (`members.unpad` them)."""
        return self.members.call("chunk", self._chunk, (state, hparams), (jnp.int32(num_updates),))

    def take_env_seconds(self) -> float | None:
        """None: the envs step inside the compiled program."""
        return None

    def close(self) -> None:
        """Nothing to free: no host envs."""

    def evaluate(self, state: Any, keys: chex.Array) -> chex.Array:
        """Evaluation returns of the real members, [num_members, episodes]."""
        if self.evaluator is None:
            raise ValueError("this Population was built without an evaluator")
        members = self.members
        return members.unpad(members.call("evaluate", self._evaluate, (state, members.place(keys))))


def run(algo: Algorithm, num_members: int, *, seed: int = 0, hparams: Any = None,
        updates_per_chunk: int = 10, evaluator: Callable | None = None,
        eval_every_chunks: int = 0, devices: Sequence[Any] | None = None,
        max_members_per_call: int | None = None, seed_index: np.ndarray | None = None,
        on_chunk: Callable[[ChunkReport], None] | None = None,
        on_start: Callable[[Driver], None] | None = None,
        restore: Callable[[Driver, Any], tuple[Any, int] | None] | None = None,
        after_chunk: Callable[[ChunkReport, Any, Any], None] | None = None,
        between_chunks: Callable[[ChunkReport, Any, Any], tuple[Any, Any, dict]] | None = None,
        stop: Callable[[ChunkReport], bool] | None = None,
        population: Driver | None = None) -> RunResult:
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


def _run(population: Driver, algo: Algorithm, num_members: int, seed: int, hparams: Any,
         updates_per_chunk: int, eval_every_chunks: int, on_chunk: Callable | None,
         on_start: Callable | None, restore: Callable | None, after_chunk: Callable | None,
         between_chunks: Callable | None = None, stop: Callable | None = None) -> RunResult:
    members = population.members
    hparams = members.place(broadcast_hparams(
        algo.default_hparams if hparams is None else hparams, num_members))
    eval_keys = stream_keys(seed, num_members, EVAL_STREAM, members.seed_index)
    init_keys = stream_keys(seed, num_members, INIT_STREAM, members.seed_index)
    restored = restore(population, members.abstract_state(init_keys, hparams)) if restore else None
    if restored:
        state, updates_done = members.from_saved(restored[0]), restored[1]
        if len(restored) > 2 and restored[2] is not None:  # hyperparameters changed during the run (PBT)
            hparams = members.place(restored[2])
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
        metrics = members.fetch(members.unpad(metrics))
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
            eval_returns = np.asarray(members.fetch(population.evaluate(state, chunk_key)))
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
            after_chunk(report, members.unpad(state), members.unpad(hparams))
        if stop is not None and stop(report) and not last:
            break
    if final_eval is None and population.can_evaluate and updates_done >= algo.num_updates:
        # restored from the final checkpoint (the run stopped before its summary): the final
        # evaluation again, with the last chunk's keys, so it equals the one that was lost
        chunk_key = jax.vmap(lambda k: jax.random.fold_in(k, num_chunks - 1))(eval_keys)
        final_eval = np.asarray(members.fetch(population.evaluate(state, chunk_key)))
    if steady_seconds == 0.0 and reports:  # a single chunk: the best we have is that chunk
        steady_seconds = seconds_first
        steady_steps = (updates_done - first * updates_per_chunk) * algo.env_steps_per_update * num_members
    return RunResult(members.unpad(state), reports, final_eval, members.compile_seconds,
                     steady_steps / steady_seconds if steady_seconds else float("nan"),
                     members.mesh.size)
