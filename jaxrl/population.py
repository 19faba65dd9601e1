"""The population driver: many agents of one algorithm trained in one compiled program,
and a training run as a plain loop over its chunks.

Seeds (and per-member hyperparameters) form a leading *population* axis, sharded over a device
mesh (`jaxrl.members`: padding, splitting into calls, data-parallel mode). A `Driver` trains
all members a chunk of updates at a time: `Population` runs `algo.update` K times in one
compiled call (envs stepped inside the program), `jaxrl.host_loop.HostPopulation` steps host
envs around the same per-step policy and `learn`. Both return per-member metrics already
reduced over the chunk, so host memory grows with members x chunks, never with steps.

`Run` is one run of a driver, read top to bottom:

    run = Run(driver, seed=0, updates_per_chunk=10)
    run.restore(state, updates_done)   # optional: continue from a checkpoint, bit for bit
    run.start()                        # init (unless restored) and compile
    for report in run:                 # one `ChunkReport` per chunk
        ...                            # log, checkpoint; run.state / run.hparams may change
    result = run.result()

`run(algo, num_members, ...)` is that loop for library users.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator, NamedTuple, Protocol, Sequence

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
    # host envs: seconds spent waiting on the envs, on the device, and on host work (None: jittable)
    time_split: dict[str, float] | None = None


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

    def take_time_split(self) -> dict[str, float] | None:
        """Seconds since the last call waiting on envs / device and on host work (host envs);
        None: the envs step inside the program."""
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

    def take_time_split(self) -> dict[str, float] | None:
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


class Run:
    """One training run of a `Driver`, as a loop over its chunks (see the module docstring).

    `state` and `hparams` are the padded, placed population trees (`driver.members.unpad`
    gives the real members'); a caller may replace either between chunks, or let a function
    do it (`between_chunks`: population-based training, combiners). `hparams` defaults to
    `algo.default_hparams` for every member; leaves with a leading [members] axis vary per
    member. Evaluation runs after every `eval_every_chunks`-th chunk (0: only after the last)
    when the driver can evaluate. Breaking out of the loop ends the run early; its result then
    has no final evaluation.
    """

    def __init__(self, driver: Driver, *, seed: int = 0, hparams: Any = None,
                 updates_per_chunk: int = 10, eval_every_chunks: int = 0):
        members = driver.members
        self.driver, self.algo = driver, members.algo
        self.updates_per_chunk, self.eval_every_chunks = updates_per_chunk, eval_every_chunks
        self.num_chunks = math.ceil(self.algo.num_updates / updates_per_chunk)
        self.hparams = members.place(broadcast_hparams(
            self.algo.default_hparams if hparams is None else hparams, members.num_members))
        self._init_keys = stream_keys(seed, members.num_members, INIT_STREAM, members.seed_index)
        self._eval_keys = stream_keys(seed, members.num_members, EVAL_STREAM, members.seed_index)
        self.state: Any = None
        self.updates_done = 0
        self.reports: list[ChunkReport] = []
        self.final_eval_returns: np.ndarray | None = None
        self._started = False
        self._first = 0  # the first chunk this run trains (after a restore: the next one due)
        self._first_seconds = self._steady_seconds = 0.0
        self._steady_steps = 0

    def abstract_state(self) -> Any:
        """The real members' state as a checkpoint holds it (`Members.abstract_state`)."""
        return self.driver.members.abstract_state(self._init_keys, self.hparams)

    def restore(self, state: Any, updates_done: int, hparams: Any = None) -> None:
        """Continues from a checkpoint taken at a chunk boundary: the real members' `state`
        after `updates_done` updates and, when they changed during the run (PBT), their
        hyperparameters. The continuation is bit-for-bit the uninterrupted run."""
        if updates_done % self.updates_per_chunk and updates_done < self.algo.num_updates:
            raise ValueError(f"a run can only continue from a chunk boundary; {updates_done} updates "
                             f"is not a multiple of {self.updates_per_chunk}")
        self.state, self.updates_done = self.driver.members.from_saved(state), updates_done
        if hparams is not None:
            self.hparams = self.driver.members.place(hparams)

    def start(self) -> float:
        """Initialises the members (unless restored) and compiles; returns the compile seconds."""
        if self.state is None:
            self.state = self.driver.init(self._init_keys, self.hparams)
        self._started = True
        return self.driver.compile(self.state, self.hparams)

    def __iter__(self) -> Iterator[ChunkReport]:
        if not self._started:
            self.start()
        done = self.updates_done >= self.algo.num_updates
        self._first = self.num_chunks if done else self.updates_done // self.updates_per_chunk
        for index in range(self._first, self.num_chunks):
            yield self._train_chunk(index)

    def _train_chunk(self, index: int) -> ChunkReport:
        """Chunk `index`: its updates, then (when due) an evaluation; its report."""
        driver, members = self.driver, self.driver.members
        count = min(self.updates_per_chunk, self.algo.num_updates - self.updates_done)
        start = time.perf_counter()
        self.state, metrics = driver.train_chunk(self.state, self.hparams, count)
        metrics = members.fetch(members.unpad(metrics))
        seconds = time.perf_counter() - start
        if index == self._first:  # the first call still pays one-off costs (thread pools, allocation)
            self._first_seconds = seconds
        else:
            self._steady_seconds += seconds
            self._steady_steps += count * self.algo.env_steps_per_update * members.num_members
        self.updates_done += count
        time_split = driver.take_time_split()
        last = index == self.num_chunks - 1
        eval_returns, eval_seconds = None, 0.0
        if driver.can_evaluate and (last or (self.eval_every_chunks and (index + 1) % self.eval_every_chunks == 0)):
            eval_start = time.perf_counter()
            eval_returns = self._evaluate(index)
            eval_seconds = time.perf_counter() - eval_start
            if last:
                self.final_eval_returns = eval_returns
        report = ChunkReport(index, self.updates_done, self.updates_done * self.algo.env_steps_per_update,
                             seconds, {k: np.asarray(v) for k, v in metrics.items()}, eval_returns,
                             eval_seconds, time_split)
        self.reports.append(report)
        return report

    def _evaluate(self, index: int) -> np.ndarray:
        """The real members' evaluation returns with chunk `index`'s keys."""
        chunk_key = jax.vmap(lambda k: jax.random.fold_in(k, index))(self._eval_keys)
        return np.asarray(self.driver.members.fetch(self.driver.evaluate(self.state, chunk_key)))

    def between_chunks(self, change: Callable[[ChunkReport, Any, Any], tuple[Any, Any, dict]]) -> ChunkReport:
        """Lets `change(report, state, hparams) -> (state, hparams, extra metrics)` act on the
        population after the latest chunk (e.g. `population_ops.BetweenChunks.apply`: PBT,
        combiners); its extra per-member metrics join that chunk's report, which is returned."""
        report = self.reports[-1]
        self.state, self.hparams, extra = change(report, self.state, self.hparams)
        self.reports[-1] = report._replace(metrics={**report.metrics, **extra})
        return self.reports[-1]

    def result(self) -> RunResult:
        """The real members' final state, every report, the final evaluation (None when the
        run stopped early), compile seconds and steady-state env steps per second."""
        members = self.driver.members
        if self.final_eval_returns is None and self.driver.can_evaluate and self.updates_done >= self.algo.num_updates:
            # restored from the final checkpoint (the run stopped before its summary): the final
            # evaluation again, with the last chunk's keys, so it equals the one that was lost
            self.final_eval_returns = self._evaluate(self.num_chunks - 1)
        seconds, steps = self._steady_seconds, self._steady_steps
        if seconds == 0.0 and self.reports:  # a single chunk: the best we have is that chunk
            seconds = self._first_seconds
            steps = ((self.updates_done - self._first * self.updates_per_chunk)
                     * self.algo.env_steps_per_update * members.num_members)
        return RunResult(members.unpad(self.state), self.reports, self.final_eval_returns,
                         members.compile_seconds, steps / seconds if seconds else float("nan"),
                         members.mesh.size)


def run(algo: Algorithm, num_members: int, *, seed: int = 0, hparams: Any = None,
        updates_per_chunk: int = 10, evaluator: Callable | None = None,
        eval_every_chunks: int = 0, devices: Sequence[Any] | None = None,
        max_members_per_call: int | None = None, seed_index: np.ndarray | None = None,
        between_chunks: Callable[[ChunkReport, Any, Any], tuple[Any, Any, dict]] | None = None,
        population: Driver | None = None) -> RunResult:
    """Trains `num_members` agents for `algo.num_updates` updates each and evaluates them:
    a `Run` looped to its end.

    `hparams` defaults to `algo.default_hparams` for every member; give leaves a leading
    [num_members] axis to vary them. Evaluation runs after every `eval_every_chunks`-th
    chunk (0: only at the end) when an `evaluator` is given. `between_chunks(report, state,
    hparams) -> (state, hparams, extra metrics)` may change the population after each chunk
    (`Run.between_chunks`). A ready `population` driver (e.g. `jaxrl.host_loop.HostPopulation`)
    replaces the default `Population` built from `algo`, `evaluator`, `devices`,
    `max_members_per_call` and `seed_index`; `run` closes it at the end. Logging, checkpoints,
    resuming and stopping early: loop over a `Run` yourself (as `jaxrl.experiment.train` does).
    """
    driver = population or Population(algo, num_members, devices=devices, evaluator=evaluator,
                                      max_members_per_call=max_members_per_call, seed_index=seed_index)
    try:
        loop = Run(driver, seed=seed, hparams=hparams, updates_per_chunk=updates_per_chunk,
                   eval_every_chunks=eval_every_chunks)
        for _ in loop:
            if between_chunks is not None:
                loop.between_chunks(between_chunks)
        return loop.result()
    finally:
        driver.close()
