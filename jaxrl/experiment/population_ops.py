"""Between chunks: population-based training and combiners as a config's `pbt:` and
`combine:` sections ask, on the whole (sharded) population, through `jaxrl.combine`.

Members are ranked by a chunk metric (the mean return of the episodes they finished in that
chunk, by default). Every member's current perturbed hyperparameters and its PBT parent go
into the chunk's metrics (`hp_<name>`, `pbt_parent`), so `metrics.csv` holds each member's
lineage and hyperparameter schedule.

Schedules (`Schedule`, `due`): every N env steps or N updates per member (rounded up to whole
chunks, so they follow the chunk index and a resumed run keeps them exactly), or every N
episodes: at the first chunk end where the members have finished N episodes each on
average since the last application. That count is the one state `BetweenChunks` carries: it
is recorded per chunk in the metrics (`pbt_episodes`, `combine_episodes`: the count at that
chunk's end, this chunk's included, before it resets) and saved with each checkpoint
(`state_dict`), so a resumed run applies its next operation where the uninterrupted one did.

A combiner is any function `(population_state, stats) -> population_state`: the built-ins
(`mean`, `weighted_mean`, `best`, `fixed`), a `"module:function"` named by
`combine.strategy`, or `custom_combiner=` for Python users (see `make_between_chunks`).
`combine.strategy: data_parallel` acts on nothing between chunks: the population is built as
one learner (`Members(data_parallel=True)`, as `experiment.assemble.make_population` does:
gradients averaged over all members at every step).
"""

from __future__ import annotations

import importlib
import math
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from jaxrl import combine
from jaxrl.errors import ConfigError
from jaxrl.members import Members
from jaxrl.population import ChunkReport, Driver

PBT_STREAM = 7  # a key stream of its own, apart from init/eval
UNIT_INTERVAL = ("gamma", "gae_lambda", "clip_eps", "tau", "eps_start", "eps_end",
                 "eps_decay_fraction", "per_alpha", "per_beta_start")
Combiner = Callable[[Any, dict[str, Any]], Any]  # (population_state, stats) -> population_state


def every_chunks(every_env_steps: int, chunk_env_steps: int) -> int:
    """Chunks between two applications (0: never)."""
    return math.ceil(every_env_steps / chunk_env_steps) if every_env_steps else 0


class Schedule(NamedTuple):
    """When an operation applies between chunks: every `chunks` chunks, or once the members
    have finished `episodes` episodes each on average since it last applied (0: never)."""

    chunks: int = 0
    episodes: int = 0

    @property
    def on(self) -> bool:
        return bool(self.chunks or self.episodes)


def schedule_of(section: Any, updates_per_chunk: int, env_steps_per_update: int) -> Schedule:
    """The schedule of a `pbt:` or `combine:` section (its `every_env_steps`, `every_updates`
    or `every_episodes`; the config allows at most one)."""
    return Schedule(every_chunks(section.every_env_steps, updates_per_chunk * env_steps_per_update)
                    or every_chunks(section.every_updates, updates_per_chunk),
                    section.every_episodes)


def due(schedule: Schedule, chunk: int, episodes: float) -> bool:
    """Whether an operation on `schedule` applies after chunk `chunk` (counted from 0), with
    `episodes` the members' mean episodes finished since it last applied, this chunk's included."""
    if schedule.chunks:
        return (chunk + 1) % schedule.chunks == 0
    return bool(schedule.episodes) and episodes >= schedule.episodes


def chunk_episodes(metrics: dict[str, np.ndarray]) -> float:
    """The members' mean number of episodes finished in a chunk. The `episodes` metric is
    already per member the count over the whole chunk: `population.reduce_chunk` sums it over
    the chunk's updates (it averages the other metrics)."""
    if "episodes" not in metrics:
        raise ValueError("an episode schedule needs the algorithm's `episodes` metric "
                         "(see jaxrl.algos.base); use every_env_steps or every_updates")
    return float(np.mean(metrics["episodes"]))


def _padded(values: np.ndarray | None, size: int) -> np.ndarray:
    """Per-member values over the padded population; padding (and missing) values are NaN."""
    out = np.full(size, np.nan, np.float32)
    if values is not None:
        out[:len(values)] = values
    return out


def chunk_stats(report: ChunkReport, score: str, valid: np.ndarray) -> dict[str, Any]:
    """What a combiner sees of a chunk: every per-member metric as a [padded members] array
    (NaN for padding), `score` (the metric that ranks members), `valid` (real members),
    and `chunk`, `env_steps`, `updates_done` (per member)."""
    size = len(valid)
    stats: dict[str, Any] = {name: _padded(values, size) for name, values in report.metrics.items()}
    return {**stats, "score": _padded(report.metrics.get(score), size), "valid": valid.copy(),
            "chunk": report.chunk, "env_steps": report.env_steps, "updates_done": report.updates_done}


def load_combiner(path: str) -> Combiner:
    """The function that `combine.strategy: "module:function"` names, imported now."""
    module_name, _, name = path.partition(":")
    fix = "the module must be importable (on PYTHONPATH) and define the function"
    try:
        module = importlib.import_module(module_name.strip())
    except ImportError as error:
        raise ConfigError(f"combine.strategy {path!r}: cannot import module {module_name!r} ({error}); "
                          f"{fix}") from None
    function = getattr(module, name.strip(), None)
    if not callable(function):
        raise ConfigError(f"combine.strategy {path!r}: module {module_name!r} has no function {name!r}; {fix}")
    return function


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    return tuple(np.shape(x)), np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def checked(combiner: Combiner, name: str) -> Combiner:
    """`combiner`, refusing a result that is not a population state like the one it was given
    (same tree structure, leaf shapes and dtypes)."""
    def apply(state: Any, stats: dict[str, Any]) -> Any:
        out = combiner(state, stats)
        want, got = jax.tree.structure(state), jax.tree.structure(out)
        if want != got:
            raise ValueError(f"combiner {name} must return the population state's structure "
                             f"{want}, got {got}")
        for (where, old), new in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(out)):
            (old_shape, old_dtype), (new_shape, new_dtype) = _shape_dtype(old), _shape_dtype(new)
            if old_shape != new_shape or old_dtype != new_dtype:
                raise ValueError(f"combiner {name} changed state{jax.tree_util.keystr(where)} from "
                                 f"{old_dtype}{list(old_shape)} to {new_dtype}{list(new_shape)}; "
                                 f"return the same shapes and dtypes")
        return out
    return apply


def builtin_combiner(comb: Any, valid: np.ndarray) -> Combiner:
    """A built-in `combine.strategy` as a jitted `(state, stats) -> state`."""
    def mean(state, scores):
        return combine.mean_params(state, scores, valid)

    def weighted_mean(state, scores):
        return combine.mean_params(state, scores, valid, comb.temperature)

    def best(state, scores):
        return combine.best_member(state, scores, valid)

    def fixed(state, scores):
        return combine.fixed_member(state, comb.member)

    jitted = jax.jit({"mean": mean, "weighted_mean": weighted_mean, "best": best, "fixed": fixed}[comb.strategy])
    return lambda state, stats: jitted(state, stats["score"])


class BetweenChunks:
    """PBT and a combiner acting on the population between chunks (`apply`), each on its
    schedule. What they carry from one chunk to the next, the members' mean episodes finished
    since each last applied, is checkpointed with the state (`state_dict`,
    `load_state_dict`). `make_between_chunks` builds one from a config."""

    def __init__(self, config: Any, members: Members, num_updates: int, pbt_schedule: Schedule,
                 combiner: Combiner | None, comb_schedule: Schedule):
        pbt = config.pbt
        self.members, self.num_updates = members, num_updates
        self.pbt_schedule, self.comb_schedule = pbt_schedule, comb_schedule
        self.hyperparameters, self.pbt_score, self.comb_score = pbt.hyperparameters, pbt.score, config.combine.score
        self.combiner = combiner
        self.valid = np.arange(members.padded_members) < members.num_members
        bounds = {name: (0.0, 1.0) for name in UNIT_INTERVAL}
        self._exploit = jax.jit(partial(combine.exploit_explore, fraction=pbt.fraction, names=pbt.hyperparameters,
                                        factors=tuple(pbt.factors), bounds=bounds))
        self._base_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), PBT_STREAM)
        self.episodes_since = {"pbt": 0.0, "combine": 0.0}  # mean episodes per member since each last applied

    def state_dict(self) -> dict[str, float]:
        """What a checkpoint keeps, so a resumed run keeps its episode schedules exactly."""
        return dict(self.episodes_since)

    def load_state_dict(self, saved: dict[str, float]) -> None:
        self.episodes_since.update(saved)

    def apply(self, report: ChunkReport, state: Any, hparams: Any) -> tuple[Any, Any, dict]:
        """After a chunk: PBT's exploit-and-explore and the combiner where due (never after the
        last chunk); returns the population's state and hyperparameters, kept where the
        population keeps them, and per-member metrics for the report (lineage, schedules)."""
        members = self.members
        parents = np.arange(members.num_members)
        extra = self._count_episodes(report)
        if report.updates_done < self.num_updates:  # nothing to change after the last chunk
            if due(self.pbt_schedule, report.chunk, self.episodes_since["pbt"]):
                scores = _padded(report.metrics.get(self.pbt_score), members.padded_members)
                key = jax.random.fold_in(self._base_key, report.chunk)
                state, hparams, sources = self._exploit(key, state, hparams, scores, self.valid)
                state, hparams = members.settle(state), members.settle(hparams)
                parents = np.asarray(members.fetch(sources))[:members.num_members]
                self.episodes_since["pbt"] = 0.0
            if due(self.comb_schedule, report.chunk, self.episodes_since["combine"]):
                state = members.settle(self.combiner(state, chunk_stats(report, self.comb_score, self.valid)))
                self.episodes_since["combine"] = 0.0
        if self.pbt_schedule.on:
            extra["pbt_parent"] = parents.astype(np.float64)
        for name in self.hyperparameters:
            extra[f"hp_{name}"] = np.asarray(members.fetch(getattr(hparams, name)), np.float64)[:members.num_members]
        return state, hparams, extra

    def _count_episodes(self, report: ChunkReport) -> dict[str, np.ndarray]:
        """Adds the chunk's episodes to each episode schedule's count; the counts as metrics."""
        schedules = (("pbt", self.pbt_schedule), ("combine", self.comb_schedule))
        episodes = chunk_episodes(report.metrics) if any(s.episodes for _, s in schedules) else 0.0
        counts = {}
        for name, schedule in schedules:
            self.episodes_since[name] += episodes
            if schedule.episodes:
                counts[f"{name}_episodes"] = np.full(self.members.num_members, self.episodes_since[name])
        return counts


def make_between_chunks(config: Any, pop: Driver, num_updates: int, updates_per_chunk: int,
                        env_steps_per_update: int, custom_combiner: Combiner | None = None
                        ) -> BetweenChunks | None:
    """What acts on `pop` between chunks for `config` (None when neither PBT nor a combiner
    does; `BetweenChunks.apply` goes to `population.Run.between_chunks`).

    `custom_combiner` (a `(population_state, stats) -> population_state` function, see
    `chunk_stats`) replaces `combine.strategy`, on the `combine:` section's schedule. A
    combiner gets the state as the population keeps it: sharded jax arrays, or host numpy
    arrays when the population is split into calls; it must return the same structure and
    shapes. `combine.strategy: data_parallel` needs `pop` built data-parallel (one learner)."""
    pbt, comb, members = config.pbt, config.combine, pop.members
    if comb.strategy == "data_parallel" and custom_combiner is None and not members.data_parallel:
        raise ConfigError("combine.strategy data_parallel needs a population built as one learner: "
                          "Population(..., data_parallel=True), as experiment.assemble.make_population builds it")
    pbt_schedule = schedule_of(pbt, updates_per_chunk, env_steps_per_update)
    comb_schedule = schedule_of(comb, updates_per_chunk, env_steps_per_update)
    if custom_combiner is not None:
        if not comb_schedule.on:
            raise ConfigError("a custom combiner needs a schedule: set one of combine.every_env_steps, "
                              "combine.every_updates or combine.every_episodes")
        combiner = checked(custom_combiner, getattr(custom_combiner, "__name__", repr(custom_combiner)))
    elif ":" in comb.strategy:
        combiner = checked(load_combiner(comb.strategy), comb.strategy)
    elif comb.strategy in ("none", "data_parallel"):
        combiner, comb_schedule = None, Schedule()
    else:
        combiner = builtin_combiner(comb, np.arange(members.padded_members) < members.num_members)
    if not pbt_schedule.on and not comb_schedule.on:
        return None
    return BetweenChunks(config, members, num_updates, pbt_schedule, combiner, comb_schedule)


def hparams_to_json(hparams: Any) -> dict[str, list[float]]:
    """Every member's hyperparameters as plain lists (checkpoint progress records)."""
    return {name: [float(x) for x in np.asarray(value)] for name, value in hparams._asdict().items()}


def hparams_from_json(record: dict[str, list[float]], like: Any) -> Any:
    """The inverse of `hparams_to_json`, shaped like the algorithm's `HParams`."""
    return like._replace(**{name: np.asarray(record[name], np.float32) for name in like._fields})
