"""Hyperparameter sweeps: which settings a config asks for, and how they share programs.

A config's `sweep:` section maps dotted keys to lists of values (or ranges), combined as a
grid; a list written in place of a scalar in the `algo:` section means the same. Keys that
are fields of the algorithm's vmappable `HParams` (learning rate, gamma, lambda, clip,
entropy coefficient, tau, epsilon schedule, PER alpha/beta, KL coefficient ...) become a
second population axis: settings x seeds train in one compiled program. Keys that change
shapes or program structure (network sizes, num_envs, flags) must be listed under
`sweep.static:`; each of their combinations is its own program, run one after another
under one run folder. `sweep.settings:` lists settings one by one instead (each a mapping
of dotted vmappable keys, optionally with a `name`), e.g. the trials `jaxrl sweep` asks
Optuna for; with grid entries beside it, every listed setting is combined with every grid
point. Member m of a program is setting m // seeds, seed m % seeds, so each member equals
the single run of its setting with that seed.

The sections' grammar and checks live in `jaxrl.sweep_spec` (which `jaxrl.config` uses to
validate them); its names are importable from here too.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

from jaxrl import config as config_lib
from jaxrl.sweep_spec import (  # noqa: F401  (re-exported: `sweep_lib.split`, ...)
    RANGE_KEYS, SETTINGS, SPACE_TYPES, STATIC, SearchParam, Setting, check, expand, grid,
    lift_inline_lists, listed, parse_space, scalar_fields, split, vmappable_keys, with_values,
)


class Layout(NamedTuple):
    """How a program's population maps to (setting, seed)."""

    settings: list[Setting]
    seeds: int

    @property
    def members(self) -> int:
        return len(self.settings) * self.seeds

    @property
    def seed_index(self) -> np.ndarray:
        """Member m's seed index, m % seeds: its keys equal that seed's in a single run."""
        return np.arange(self.members) % self.seeds

    @property
    def swept(self) -> bool:
        return len(self.settings) > 1 or bool(self.settings[0].name)

    def setting_of(self, member: int) -> Setting:
        return self.settings[member // self.seeds]

    def members_of(self, setting: int) -> np.ndarray:
        return np.arange(setting * self.seeds, (setting + 1) * self.seeds)


def folder_name(setting: Setting) -> str:
    """A static setting's program folder: its name with only filesystem-safe characters."""
    return re.sub(r"[^A-Za-z0-9_.=,+-]+", "-", setting.name).strip("-") or "base"


def fixed_config(config: config_lib.Config, values: dict[str, Any],
                 keep_vmapped: bool = False) -> config_lib.Config:
    """`config` with `values` set and (unless `keep_vmapped`) no sweep left: a single run's config."""
    data = config_lib.to_dict(config)
    vmapped, _ = split(config.sweep)
    sweep = {k: v for k, v in vmapped.items() if k not in values} if keep_vmapped else {}
    if keep_vmapped and SETTINGS in config.sweep:
        sweep[SETTINGS] = config.sweep[SETTINGS]
    data = with_values({**data, "sweep": sweep}, values)
    return config_lib.from_dict(data)


def layout(config: config_lib.Config) -> Layout:
    """The program layout of a config whose static sweep (if any) is already fixed."""
    vmapped, static = split(config.sweep)
    if static:
        raise ValueError("a config with sweep.static runs one program per static setting; "
                         "fix them first (static_settings, fixed_config)")
    points = grid(vmapped)
    settings = [Setting(",".join(x for x in (a.name, b.name) if x), {**a.values, **b.values})
                for a in listed(config.sweep) or [Setting("", {})] for b in points]
    return Layout(settings, config.seeds)


def static_settings(config: config_lib.Config) -> list[Setting]:
    """One setting per combination of the `sweep.static:` values (one program each)."""
    return grid(split(config.sweep)[1])


def stacked_hparams(config: config_lib.Config, lay: Layout) -> Any:
    """Every member's hyperparameters, leaves [members]: each setting's own, once per seed."""
    import jax
    import jax.numpy as jnp

    per_setting = [fixed_config(config, s.values).algo.hparams() for s in lay.settings]
    return jax.tree.map(lambda *xs: jnp.repeat(jnp.stack(xs), lay.seeds, axis=0), *per_setting)
