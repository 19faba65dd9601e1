"""Memory of a population's training state, estimated before anything is compiled or allocated.

The state (parameters, optimiser moments, target networks, replay buffers, env states) is
what stays resident across chunks; it is measured exactly from the shapes `init` would give
(`jax.eval_shape`, nothing computed). Checkpoints and evaluation copy it to the host once,
so on CPU, where device and host share RAM, a run needs about twice the state.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxrl.algos.base import Algorithm
from jaxrl.errors import ConfigError

HEADROOM = 0.9  # the share of free memory a run may plan to use


def tree_bytes(tree: Any) -> int:
    """Bytes of every array (or shape-dtype struct) in `tree`; PRNG keys count their raw data."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            total += leaf.size * 8  # two uint32 words per threefry key
        else:
            total += leaf.size * jnp.dtype(leaf.dtype).itemsize
    return int(total)


def member_state_shapes(algo: Algorithm) -> Any:
    """The abstract state of one member (shapes and dtypes only)."""
    return jax.eval_shape(algo.init, jax.random.key(0), algo.default_hparams)


def available_bytes(devices: Sequence[Any]) -> tuple[int | None, str]:
    """Memory the population may use on `devices`, and where it lives. Accelerators report
    their own limit; CPU devices share the host's free RAM."""
    platform = devices[0].platform
    if platform != "cpu":
        stats = [d.memory_stats() or {} for d in devices]
        limits = [s.get("bytes_limit", 0) - s.get("bytes_in_use", 0) for s in stats]
        if all(limit > 0 for limit in limits):
            return int(min(limits)) * len(devices), f"{len(devices)} {platform} device(s)"
        return None, platform
    free = host_free_bytes()
    if free is None:
        return None, "cpu"
    return free, "host RAM (cpu devices)"


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if num_bytes < 1024 or unit == "TiB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{int(num_bytes)} B"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"


class MemoryPlan(NamedTuple):
    members: int
    member_bytes: int
    replay_bytes: int  # per member; 0 without replay buffers
    available: int | None
    where: str
    copies: int  # resident copies the run needs (2 on CPU: state + host copy)

    @property
    def total(self) -> int:
        return self.members * self.member_bytes * self.copies

    @property
    def max_members(self) -> int | None:
        if self.available is None:
            return None
        return int(HEADROOM * self.available // (self.member_bytes * self.copies))

    def describe(self) -> str:
        replay = f", of which replay buffer {_size(self.replay_bytes)}" if self.replay_bytes else ""
        room = f"; {_size(self.available)} free in {self.where}" if self.available is not None else ""
        copies = " x 2 (host copy for checkpoints)" if self.copies == 2 else ""
        return (f"population state: {self.members} members x {_size(self.member_bytes)}{replay}"
                f"{copies} = {_size(self.total)}{room}")


def plan(algo: Algorithm, members: int, devices: Sequence[Any] | None = None,
         limit: int | None = None) -> MemoryPlan:
    """Measures one member's state and sets it against the free memory of `devices` (or
    against `limit` bytes, e.g. `--memory-limit`)."""
    devices = list(devices if devices is not None else jax.devices())
    shapes = member_state_shapes(algo)
    replay = tree_bytes(getattr(shapes, algo.replay_field)) if algo.replay_field else 0
    available, where = available_bytes(devices)
    if limit is not None:
        available, where = limit, "the given memory limit"
    copies = 2 if devices[0].platform == "cpu" else 1
    return MemoryPlan(members, tree_bytes(shapes), replay, available, where, copies)


def per_device_bytes(devices: Sequence[Any], limit: int | None = None) -> int | None:
    """Memory one device may use: an accelerator's own free memory (the least free of
    `devices`); CPU devices (or a total `limit`) share it equally."""
    devices = list(devices)
    if limit is not None:
        return limit // len(devices)
    available, _ = available_bytes(devices)
    if available is None:
        return None
    return available // len(devices)


def fitting_per_call(program_bytes: int, members_per_call: int, num_devices: int,
                     device_bytes: int) -> int | None:
    """Members per compiled call that fit when a call of `members_per_call` members needs
    `program_bytes` on each device (None: it fits); a ConfigError when not even one does."""
    if program_bytes <= HEADROOM * device_bytes:
        return None
    per_member = program_bytes / max(1, members_per_call // num_devices)
    per_device = int(HEADROOM * device_bytes // per_member)
    if per_device < 1:
        raise ConfigError(f"one member's training program needs {_size(per_member)} per device, more "
                          f"than the {_size(HEADROOM * device_bytes)} a device may use; shrink the "
                          f"rollout (num_envs, num_steps), the batch or the network")
    return per_device * num_devices


def fitting_members(memory: MemoryPlan, host_free: int | None = None) -> int | None:
    """The most members whose state fits the devices at once when the whole population's does
    not (None: it fits). Sub-populations keep their states in host memory between calls, which
    helps only where device and host memory differ: on CPU devices, and when even the host
    (`host_free` bytes) cannot hold every member's state, or not one member fits the devices,
    this is a ConfigError like `check`'s."""
    if memory.available is None or memory.total <= HEADROOM * memory.available:
        return None
    if memory.copies == 2 or not memory.max_members:  # CPU: the host *is* the device memory
        check(memory)
    whole = memory.members * memory.member_bytes
    if host_free is not None and whole > HEADROOM * host_free:
        raise ConfigError(f"the population does not fit: {memory.describe()}, and splitting it into "
                          f"sub-populations would keep {_size(whole)} of states in host memory, "
                          f"which has {_size(host_free)} free; use fewer seeds"
                          + (" or shrink algo.buffer_size" if memory.replay_bytes else ""))
    return memory.max_members


def host_free_bytes() -> int | None:
    """Free host RAM in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        return None


def check(memory: MemoryPlan) -> None:
    """Refuses, before compiling, a population whose state cannot fit, naming the largest that does."""
    if memory.available is None or memory.total <= HEADROOM * memory.available:
        return
    largest = memory.max_members
    hint = (f"the largest population that fits is {largest} seeds (--seeds {largest})"
            if largest else "not even one member fits")
    shrink = " or shrink algo.buffer_size" if memory.replay_bytes else ""
    raise ConfigError(f"the population does not fit in memory: {memory.describe()}, and a run "
                      f"may plan on {int(HEADROOM * 100)}% of that; {hint}{shrink}")
