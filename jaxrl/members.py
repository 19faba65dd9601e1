"""A population's members on a device mesh: what every population driver shares.

Members form a leading *population* axis, sharded over a 1-D device mesh along `AXIS`; each
device runs `vmap` over its own members (`MEMBER_AXIS`) inside `shard_map`, so no data crosses
devices — except in data-parallel mode, where every gradient step averages the gradients of
all members over both axes (`member_mean`). `Members` holds the layout (padding to the device
count, splitting into calls), moves population trees on and off the mesh, compiles programs
once (sharing them between populations through `programs=`) and runs the algorithm's `init`.
`population.Population` (envs stepped inside the program) and `host_loop.HostPopulation`
(envs stepped on the host) each compose one.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

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
    `num_members` weigh 0. Only valid inside a driver's shard_map and vmap, with the
    population in one call (member m sits at device m // per_device, position m % per_device)."""
    def sync(grads: Any) -> Any:
        per_device = jax.lax.psum(1, MEMBER_AXIS)
        index = jax.lax.axis_index(AXIS) * per_device + jax.lax.axis_index(MEMBER_AXIS)
        weight = (index < num_members).astype(jnp.float32)
        return jax.tree.map(
            lambda g: (jax.lax.psum(g * weight, (AXIS, MEMBER_AXIS)) / num_members).astype(g.dtype), grads)
    return sync


def _per_call(num_members: int, devices: list, pad: bool, max_members_per_call: int | None) -> int:
    """Members in one call before padding: all of them, or an even share of equal calls of at
    most `max_members_per_call` (a whole number per device where that allows)."""
    if max_members_per_call is None or max_members_per_call >= num_members:
        return num_members
    if not pad:
        raise ValueError("splitting a population into calls needs pad=True")
    width = max(1, min(len(devices), max_members_per_call))
    calls = math.ceil(num_members / max(width, max_members_per_call // width * width))
    return math.ceil(num_members / calls)


class Members:
    """`num_members` members of `algo` on a device mesh, and the programs compiled for them.

    A population that does not divide the device count is padded (`pad`; padding members are
    computed, never reported). With `max_members_per_call` below the population size, the
    population is split into equal sub-populations that run one after another through the
    same compiled program (each still vmapped and sharded), their states kept in host memory
    between calls: how a population larger than device memory trains. Member results depend
    on neither. `data_parallel=True` makes the members one learner: `algo` is rebuilt to
    average every gradient step over all real members (`member_mean`), and `init` gives every
    member member 0's networks and optimiser state, so the members stay identical while each
    collects its own experience. That needs the population in one call and an algorithm with
    `with_grad_sync`. `programs`, a dict shared between populations that build the very same
    programs (a sweep's batches of one static setting: only their hyperparameter values and
    keys, which are inputs, differ), lets a later population reuse the compiled programs of an
    earlier one instead of tracing and compiling them again; the caller vouches for the sameness.
    """

    def __init__(self, algo: Algorithm, num_members: int, *, devices: Sequence[Any] | None = None,
                 pad: bool = True, max_members_per_call: int | None = None,
                 seed_index: np.ndarray | None = None, data_parallel: bool = False,
                 programs: dict | None = None):
        self.num_members = num_members
        self.seed_index = np.arange(num_members) if seed_index is None else np.asarray(seed_index)
        devices = list(devices if devices is not None else jax.devices())
        per_call = _per_call(num_members, devices, pad, max_members_per_call)
        self.mesh = population_mesh(per_call, devices, pad)
        self.members_per_call = padded_size(per_call, self.mesh.size) if pad else per_call
        self.calls = math.ceil(num_members / self.members_per_call)
        self.padded_members = self.calls * self.members_per_call
        self.sharding = NamedSharding(self.mesh, P(AXIS))
        self.data_parallel = data_parallel
        self.algo = self._data_parallel(algo) if data_parallel else algo
        self.compile_seconds = 0.0
        self._compiled: dict[str, Any] = {}
        self._programs = programs
        self.init_program = self.per_member(self.algo.init, 2)

    def _data_parallel(self, algo: Algorithm) -> Algorithm:
        """`algo` with every gradient averaged over the population, or the reason it cannot be."""
        if algo.with_grad_sync is None:
            raise ConfigError(f"{algo.name} cannot run data-parallel (its Algorithm has no "
                              f"with_grad_sync); choose another combine.strategy")
        if self.split:
            raise ConfigError(f"combine.strategy data_parallel averages gradients over the whole population "
                              f"in one call, but {self.num_members} members run in {self.calls} calls of "
                              f"{self.members_per_call} (memory or --max-population-chunk); use fewer seeds "
                              f"or env.num_envs, more devices, or drop --max-population-chunk")
        return algo.with_grad_sync(member_mean(self.num_members))

    @property
    def split(self) -> bool:
        """Whether the population runs as several sub-populations, its state on the host."""
        return self.calls > 1

    # ---- programs -------------------------------------------------------------------------
    def per_member(self, fn: Callable, num_args: int, donate: bool = False) -> Any:
        """`fn` of one member, vmapped over the population and sharded over the mesh (jitted,
        not yet compiled); with `donate`, its first argument's buffers are reused."""
        spec = (P(AXIS),) * num_args
        mapped = jax.shard_map(jax.vmap(fn, axis_name=MEMBER_AXIS), mesh=self.mesh, in_specs=spec,
                               out_specs=P(AXIS), check_vma=False)
        return jax.jit(mapped, donate_argnums=(0,) if donate else ())

    def compiled(self, name: str, fn: Any, *args: Any) -> Any:
        """`fn` compiled for `args` once: by these members, or by an earlier population that
        shares `programs` and ran the same shapes. Compiling adds to `compile_seconds`."""
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

    def one_call(self, tree: Any) -> Any:
        """Shapes of one call's share of a padded population tree, sharded over the mesh."""
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.members_per_call,) + x.shape[1:],
                                                           x.dtype, sharding=self.sharding), tree)

    def call(self, name: str, fn: Any, members: tuple, shared: tuple = ()) -> Any:
        """Runs compiled `fn` over the population: once on device-resident inputs, or (split)
        once per sub-population, moving each share to the devices and its outputs back to
        host arrays. `members` have a leading padded member axis; `shared` go to every call."""
        if not self.split:
            return self.compiled(name, fn, *members, *shared)(*members, *shared)
        compiled = self.compiled(name, fn, *(self.one_call(t) for t in members), *shared)
        outputs = []
        for call in range(self.calls):
            share = slice(call * self.members_per_call, (call + 1) * self.members_per_call)
            placed = jax.device_put(jax.tree.map(lambda x: x[share], members), self.sharding)
            outputs.append(self.fetch(compiled(*placed, *shared)))
        return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)

    def init(self, keys: chex.Array, hparams: Any) -> Any:
        """Every member's initial state (data-parallel: all with member 0's networks)."""
        state = self.call("init", self.init_program, (self.place(keys), self.place(hparams)))
        if self.data_parallel:
            state = jax.device_put(jax.jit(combine.fixed_member, static_argnums=1)(state, 0), self.sharding)
        return state

    def abstract_state(self, keys: chex.Array, hparams: Any) -> Any:
        """Shapes and dtypes of the real members' state, as checkpoints hold it (nothing is
        computed). Shardings say where a restore should put it: the population's own when it
        is unpadded, replicated over the mesh when padding follows, none (host memory) when split."""
        keys, hparams = self.place(keys), self.place(hparams)
        shapes = jax.eval_shape(self.init_program, *(self.one_call(t) for t in (keys, hparams)))
        if self.split:
            sharding = None
        elif self.padded_members == self.num_members:
            sharding = self.sharding
        else:
            sharding = NamedSharding(self.mesh, P())
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct((self.num_members,) + s.shape[1:], s.dtype,
                                                           sharding=sharding), shapes)

    # ---- moving population trees ----------------------------------------------------------
    def place(self, tree: Any) -> Any:
        """A pytree with a leading population axis, padded, on the mesh (split: in host memory)."""
        tree = pad_members(tree, self.padded_members)
        if self.split:
            return jax.tree.map(lambda x: np.array(x), tree)
        if jax.process_count() > 1:  # global arrays are built from host data every process holds
            tree = jax.tree.map(lambda x: x if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1
                                else np.asarray(x), tree)
        return jax.device_put(tree, self.sharding)

    def settle(self, tree: Any) -> Any:
        """A padded population tree (e.g. one a combiner returned) back where the population
        keeps it: on its mesh, or (split) as host numpy arrays."""
        return jax.tree.map(np.asarray, self.fetch(tree)) if self.split else jax.device_put(tree, self.sharding)

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
