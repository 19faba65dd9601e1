"""Checkpoints of a whole population with orbax: atomic, last k plus the best, no pickle.

A checkpoint holds the complete training state (parameters, optimiser state, env states,
normalisation statistics, RNG keys, counters) as arrays, plus a small JSON record of the
run's progress. Restoring takes the abstract state of the current run, so sharded arrays
land on the current device mesh.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxrl.errors import JaxrlError


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


class CheckpointError(JaxrlError):
    """No usable checkpoint where one was needed."""


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
        if keep_best:
            policies.append(checkpoint_managers.BestN(get_metric_fn=lambda m: m["score"], n=1))
        options = ocp.CheckpointManagerOptions(
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

    def restore_latest(self, abstract_state: Any) -> Restored:
        """The newest checkpoint that restores. A corrupt one is skipped with a warning and,
        unless read-only, moved to `corrupt/<step>` so that the run can save that step again."""
        steps = self.steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}; nothing to resume or "
                                  f"evaluate (train with checkpoint.every_env_steps > 0)")
        failures = []
        for step in reversed(steps):
            try:
                return self.restore(step, abstract_state)
            except Exception as error:  # orbax/tensorstore raise many types for bad files
                reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                failures.append(f"{step}: {reason}")
                where = self._set_aside(step)
                warnings.warn(f"checkpoint {self.directory / str(step)} is unreadable ({reason}); "
                              f"{where}trying an older one", stacklevel=2)
        raise CheckpointError(f"every checkpoint in {self.directory} is unreadable "
                              f"({'; '.join(failures)})")

    def _set_aside(self, step: int) -> str:
        if self.read_only:
            return ""
        target = self.directory / "corrupt" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self.manager.reload()
        return f"moved it to {target}; "

    def close(self) -> None:
        self.manager.close()
