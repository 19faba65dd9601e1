"""Checkpoints of a whole population with orbax: atomic, last k plus the best, no pickle.

A checkpoint holds the complete training state (parameters, optimiser state, env states,
normalisation statistics, RNG keys, counters) as arrays, plus a small JSON record of the
run's progress. Restoring takes the abstract state of the current run, so sharded arrays
land on the current device mesh.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxrl import config as config_lib
from jaxrl.errors import ConfigError, JaxrlError


def host_target(leaf: Any) -> Any:
    """What orbax restores a leaf into: a host numpy array when the leaf names no sharding
    (a population split into sub-populations keeps its state in host memory)."""
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None \
            and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.zeros(leaf.shape, leaf.dtype)
    return leaf


def _is_empty(leaf: Any) -> bool:
    """A zero-size array (brax's mjx states carry some), which orbax refuses to save."""
    return hasattr(leaf, "shape") and 0 in tuple(leaf.shape)


def without_empty(tree: Any) -> Any:
    """The tree with zero-size leaves left out (they hold no data; restore rebuilds them)."""
    return jax.tree.map(lambda leaf: None if _is_empty(leaf) else leaf, tree)


def with_empty(restored: Any, abstract: Any) -> Any:
    """`restored` (saved without its zero-size leaves) with those leaves rebuilt from the
    abstract state's shapes, dtypes and shardings."""
    def fill(target: Any, value: Any) -> Any:
        if not _is_empty(target):
            return value
        sharding = getattr(target, "sharding", None)
        return np.zeros(target.shape, target.dtype) if sharding is None else \
            jax.numpy.zeros(target.shape, target.dtype, device=sharding)

    return jax.tree.map(fill, abstract, restored)


class _UnretrievedReadErrors(logging.Filter):
    """Drops asyncio's "exception was never retrieved" reports of the reads orbax abandoned
    on a damaged checkpoint: they are logged whenever the task is collected, often after
    `quiet_orbax` ended (at exit, after our one-line error)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "exception was never retrieved" not in str(record.msg)


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
    """Silences what orbax and its async machinery print while reading a checkpoint: their
    loggers, and the tracebacks tensorstore's threads print to stderr when their reads of a
    damaged checkpoint finish after orbax gave up on it (pages of them before our one line)."""
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _UnretrievedReadErrors) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_UnretrievedReadErrors())  # for good: they surface when collected
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio", "orbax", "jax._src.distributed")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class CheckpointError(JaxrlError):
    """No usable checkpoint where one was needed."""


def plain_config(config: config_lib.Config) -> dict:
    """The config as a checkpoint's progress record stores it (JSON types only)."""
    return json.loads(json.dumps(config_lib.to_dict(config)))


def written_by(config: config_lib.Config) -> Callable[[int, dict], None]:
    """A `restore_latest` check: the checkpoint was written by a config whose saved state
    `config` can continue (checkpoints from before configs were recorded pass)."""
    current = plain_config(config)

    def check(step: int, progress: dict) -> None:
        saved = progress.get("config")
        changed = config_lib.state_breaking_changes(saved, current) if isinstance(saved, dict) else []
        if changed:
            raise ConfigError(f"checkpoint {step} was written by another config than the run's config.yaml "
                              f"({', '.join(changed)}); put config.yaml back as the run had it (nothing was moved)")

    return check


def check_written_by(directory: str | Path, config: config_lib.Config) -> None:
    """Refuses (`ConfigError`, one line) resuming from `directory` when its newest checkpoint
    with a readable progress record was written by a config `config` cannot continue: checked
    before anything is compiled or restored."""
    if not Path(directory).is_dir():
        return
    checkpointer, check = Checkpointer(directory, read_only=True), written_by(config)
    try:
        for step in reversed(checkpointer.steps()):
            try:
                progress = checkpointer.progress(step)
            except Exception:  # damaged: `restore_latest` deals with it
                continue
            check(step, progress)
            return
    finally:
        checkpointer.close()


class Restored(NamedTuple):
    step: int  # updates done when it was saved
    state: Any
    progress: dict


class Checkpointer:
    """Saves `(state, progress)` under `directory/<updates done>/`, keeping the last
    `keep_last` checkpoints plus the one with the best `score` (higher is better)."""

    def __init__(self, directory: str | Path, keep_last: int = 2, keep_best: bool = True,
                 read_only: bool = False):
        policies = [checkpoint_managers.LatestN(keep_last)]
        score = (lambda m: m["score"]) if keep_best else None
        if keep_best:  # a checkpoint without a score (killed before orbax wrote it) is not kept for it
            policies.append(checkpoint_managers.BestN(get_metric_fn=score, n=1, reverse=False,
                                                      keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            # best_fn makes orbax write each score to disk, so the policy still knows them
            # after a resume (otherwise every checkpoint from before it is kept forever)
            best_fn=score, best_mode="max",
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=False, create=not read_only, read_only=read_only,
            cleanup_tmp_directories=not read_only)
        self.directory = Path(directory).resolve()
        self.read_only = read_only
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "progress"))

    def save(self, step: int, state: Any, progress: dict, score: float) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(without_empty(state)), progress=ocp.args.JsonSave(progress)),
            metrics={"score": float(score)}, force=True)
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, step: int, abstract_state: Any) -> Restored:
        """Restores checkpoint `step` into the shapes (and shardings) of `abstract_state`;
        leaves without a sharding come back as host numpy arrays."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(without_empty(jax.tree.map(host_target, abstract_state))),
            progress=ocp.args.JsonRestore()))
        return Restored(step, with_empty(restored["state"], abstract_state), dict(restored["progress"]))

    def progress(self, step: int) -> dict:
        """Checkpoint `step`'s progress record alone (small JSON; the state is not read)."""
        with quiet_orbax():
            restored = self.manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))
        return dict(restored["progress"])

    def restore_latest(self, abstract_state: Any,
                       check: Callable[[int, dict], None] | None = None) -> Restored:
        """The newest checkpoint that restores. `check(step, progress)` first vets each one's
        progress record and raises (e.g. a `ConfigError`: it was written by another config),
        which is passed on untouched: a checkpoint that does not match is not corrupt.
        A checkpoint that fails to read is skipped with a warning; once an older one restores,
        the newer failures are moved to `corrupt/<step>` (unless read-only) so the run can save
        those steps again. When none restores, nothing is moved."""
        steps = self.steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}; nothing to resume or "
                                  f"evaluate (train with checkpoint.every_env_steps > 0)")
        failures: list[tuple[int, str]] = []
        for step in reversed(steps):
            try:
                if check is not None:
                    check(step, self.progress(step))
                with quiet_orbax():
                    restored = self.restore(step, abstract_state)
            except JaxrlError:
                raise
            except Exception as error:  # orbax/tensorstore raise many types for bad files
                with quiet_orbax():  # its reads still in flight finish, silently
                    time.sleep(1.0)
                reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                failures.append((step, reason))
                warnings.warn(f"checkpoint {self.directory / str(step)} is unreadable ({reason}); "
                              f"trying an older one", stacklevel=2)
                continue
            for bad, _ in failures:
                self._set_aside(bad)
            return restored
        raise CheckpointError(
            f"no checkpoint in {self.directory} restores ({'; '.join(f'{s}: {r}' for s, r in failures)}); "
            f"nothing was moved. If the run's config.yaml was edited, restore it; otherwise the files are damaged")

    def _set_aside(self, step: int) -> None:
        """Moves an unreadable checkpoint to `corrupt/<step>-<time>` (read-only: leaves it)."""
        if self.read_only:
            return
        target = self.directory / "corrupt" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self.manager.reload()
        warnings.warn(f"moved the unreadable checkpoint {step} to {target}", stacklevel=3)

    def close(self) -> None:
        self.manager.close()
