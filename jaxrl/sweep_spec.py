"""The `sweep:` and `search:` sections of a config as plain data: their grammar, the
settings they name, and the checks `jaxrl.config` runs while validating a config.

It knows nothing of `Config`, so `jaxrl.config` can use it and `jaxrl.sweep` (program
layouts, which need validated configs) can build on both. See `jaxrl.sweep` for what a
sweep means.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxrl.errors import ConfigError

STATIC = "static"
SETTINGS = "settings"
RANGE_KEYS = {"low", "high", "num", "log"}
# Every combination of a grid trains at once, seeds times over, so a few bytes of config could
# otherwise ask for billions of members: a range holds at most this many values, a grid
# (or the static programs) at most MAX_SETTINGS combinations, counted before any is built.
MAX_RANGE_VALUES = 4096
MAX_SETTINGS = 65536


class Setting(NamedTuple):
    """One point of a sweep: its name (for rows, plots and folders) and its dotted values."""

    name: str
    values: dict[str, Any]


def vmappable_keys(algo_module: Any, normalize_reward: bool) -> set[str]:
    """Dotted keys that may vary inside one program: the algorithm's `HParams` fields.
    With reward normalisation, gamma also sets the env wrapper's discount, so it is static."""
    keys = {f"algo.{name}" for name in algo_module.HParams._fields}
    if normalize_reward:
        keys.discard("algo.gamma")
    return keys


def expand(key: str, spec: Any) -> list[Any]:
    """A sweep entry's values: a non-empty list, or a range `{low, high, num, log}`."""
    if isinstance(spec, dict):
        unknown = set(spec) - RANGE_KEYS
        if unknown or not {"low", "high", "num"} <= set(spec):
            raise ConfigError(f"sweep.{key}: a range needs low, high and num (and optionally "
                              f"log: true), got {sorted(spec)}")
        low, high, num = _number(spec["low"]), _number(spec["high"]), spec["num"]
        if low is None or high is None or not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise ConfigError(f"sweep.{key}: low and high must be numbers and num a positive "
                              f"integer, got {spec}")
        if num > MAX_RANGE_VALUES:
            raise ConfigError(f"sweep.{key}: num={num} values is more than the {MAX_RANGE_VALUES} a range "
                              f"may hold; a population trains every combination at once")
        if not (low < high or (low == high and num == 1)):
            raise ConfigError(f"sweep.{key}: the range is empty or inverted (low {low:g} must be below "
                              f"high {high:g}); swap them")
        if spec.get("log"):
            if low <= 0 or high <= 0:
                raise ConfigError(f"sweep.{key}: a log range needs positive low and high, got {spec}")
            return [float(v) for v in np.geomspace(low, high, num)]
        return [float(v) for v in np.linspace(low, high, num)]
    if not isinstance(spec, list) or not spec:
        raise ConfigError(f"sweep.{key} must be a non-empty list of values or a range "
                          f"{{low, high, num}}, got {spec!r}"[:300])
    if len(spec) > MAX_RANGE_VALUES:
        raise ConfigError(f"sweep.{key}: {len(spec)} values is more than the {MAX_RANGE_VALUES} a sweep "
                          f"key may take")
    return list(spec)


def _number(value: Any) -> float | None:
    """A float from a number or numeric text (YAML reads `1e-3` as text)."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def lift_inline_lists(data: dict, scalar_fields: set[str]) -> dict:
    """Moves lists written in place of scalar `algo:` values into the `sweep:` section (the
    first value stays as the base config's)."""
    algo = data.get("algo")
    if not isinstance(algo, dict):
        return data
    lifted = {f"algo.{key}": value for key, value in algo.items()
              if key in scalar_fields and isinstance(value, list)}
    if not lifted:
        return data
    sweep = dict(data.get("sweep") or {})
    for key, values in lifted.items():
        if key in sweep:
            raise ConfigError(f"{key} is swept twice: as a list in algo: and in sweep:; keep one")
        sweep[key] = values
    return {**data, "algo": {**algo, **{k.split(".", 1)[1]: v[0] if v else v for k, v in lifted.items()}},
            "sweep": sweep}


def split(sweep: dict) -> tuple[dict[str, list], dict[str, list]]:
    """(vmapped grid entries, static entries), values expanded (`settings:` apart: `listed`)."""
    if not isinstance(sweep, dict):
        raise ConfigError(f"sweep must be a mapping of dotted keys to lists, got {sweep!r}")
    static = sweep.get(STATIC) or {}
    if not isinstance(static, dict):
        raise ConfigError(f"sweep.static must be a mapping of dotted keys to lists, got {static!r}")
    vmapped = {k: expand(k, v) for k, v in sweep.items() if k not in (STATIC, SETTINGS)}
    static = {k: expand(f"static.{k}", v) for k, v in static.items()}
    for name, entries in (("sweep", vmapped), ("sweep.static", static)):
        count = math.prod(len(values) for values in entries.values())
        if count > MAX_SETTINGS:
            raise ConfigError(f"{name}: the grid has {count:,} combinations ({' x '.join(str(len(v)) for v in entries.values())}), "
                              f"more than the {MAX_SETTINGS:,} allowed; sweep fewer values or list chosen "
                              f"combinations under sweep.settings:")
    return vmapped, static


def listed(sweep: dict) -> list[Setting]:
    """The settings of `sweep.settings:`, one by one (named `name`, or by their values)."""
    entries = sweep.get(SETTINGS) if isinstance(sweep, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"sweep.settings must be a non-empty list of mappings of dotted keys to "
                          f"values (one per setting), got {entries!r}")
    settings = []
    for entry in entries:
        values = {k: v for k, v in entry.items() if k != "name"}
        settings.append(Setting(str(entry.get("name") or grid({k: [v] for k, v in values.items()})[0].name),
                                values))
    names = [s.name for s in settings]
    if len(set(names)) < len(names):
        raise ConfigError(f"sweep.settings: two settings share a name ({names}); names must differ")
    return settings


def check(sweep: dict, vmappable: set[str]) -> None:
    """Refuses a key that cannot share a program unless it is under `sweep.static:`, and a
    key swept twice."""
    vmapped, static = split(sweep)
    listed_keys = {k for s in listed(sweep) for k in s.values}
    for key in set(vmapped) | listed_keys:
        if key not in vmappable:
            hint = (f"vmappable keys: {', '.join(sorted(vmappable))}" if key.startswith("algo.")
                    else "only algo hyperparameters are vmappable")
            raise ConfigError(
                f"sweep.{key} changes the compiled program (shapes, flags or structure), so its "
                f"values cannot train in one program with the others; move it under sweep.static: "
                f"to run one program per value in sequence ({hint})")
    for key in (set(vmapped) | listed_keys) & set(static) or set(vmapped) & listed_keys:
        raise ConfigError(f"{key} is swept twice (grid, settings: or static:); keep one")


def _short(key: str, keys: Sequence[str]) -> str:
    """`algo.lr` -> `lr` unless another swept key ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return str(value)


def grid(entries: dict[str, list]) -> list[Setting]:
    """Every combination of `entries` (the last key varies fastest), each with its name."""
    if not entries:
        return [Setting("", {})]
    keys = list(entries)
    settings = []
    for combo in itertools.product(*(entries[k] for k in keys)):
        values = dict(zip(keys, combo))
        settings.append(Setting(",".join(f"{_short(k, keys)}={_format(v)}" for k, v in values.items()), values))
    return settings


def with_values(data: dict, values: dict[str, Any]) -> dict:
    """A copy of raw config data with dotted `values` set."""
    import copy

    data = copy.deepcopy(data)
    for key, value in values.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def scalar_fields(algo_config_cls: type) -> set[str]:
    """`algo:` fields whose values are scalars, so a list there can only mean a sweep."""
    import typing

    hints = typing.get_type_hints(algo_config_cls)
    return {f.name for f in dataclasses.fields(algo_config_cls)
            if hints.get(f.name) in (int, float, bool, str)}


# --- search spaces (`search.space:`, read by `jaxrl sweep`) ---------------------------------

SPACE_TYPES = ("log_uniform", "uniform", "int", "categorical")


class SearchParam(NamedTuple):
    """One dimension of a search space: a dotted config key and where its values may lie."""

    key: str
    kind: str  # one of SPACE_TYPES
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def bounds(self) -> list[Any]:
        """The values that must each be valid in a single run: the ends, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def parse_space(space: dict) -> list[SearchParam]:
    """`search.space` as `SearchParam`s, refusing empty or inverted ranges, unknown types and
    entries, and empty choices with one line naming the key."""
    if not isinstance(space, dict):
        raise ConfigError(f"search.space must map dotted keys to ranges, got {space!r}")
    return [_param(key, spec) for key, spec in space.items()]


def _param(key: str, spec: Any) -> SearchParam:
    where = f"search.space.{key}"
    allowed = {"log_uniform": {"low", "high"}, "uniform": {"low", "high", "step", "log"},
               "int": {"low", "high", "step", "log"}, "categorical": {"choices"}}
    if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
        raise ConfigError(f"{where} must be a mapping with type: one of {', '.join(SPACE_TYPES)} "
                          f"(e.g. {{type: log_uniform, low: 1e-4, high: 1e-2}}), got {spec!r}")
    kind = spec["type"]
    unknown = set(spec) - allowed[kind] - {"type"}
    if unknown:
        raise ConfigError(f"{where}: unknown entries {sorted(unknown)} for type {kind} "
                          f"(allowed: {', '.join(sorted(allowed[kind]))})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: a categorical needs a non-empty list of choices, got {choices!r}")
        return SearchParam(key, kind, choices=tuple(choices))
    low, high = _number(spec.get("low")), _number(spec.get("high"))
    if low is None or high is None:
        raise ConfigError(f"{where}: low and high must be numbers, got low={spec.get('low')!r} "
                          f"high={spec.get('high')!r}")
    if not low < high:
        raise ConfigError(f"{where}: the range is empty or inverted (low {low:g} must be below high "
                          f"{high:g})")
    log = kind == "log_uniform" or bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low:g}")
    step = _number(spec.get("step")) if spec.get("step") is not None else None
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be positive and cannot be combined with a log range")
    if kind == "int":
        if not (low.is_integer() and high.is_integer() and (step is None or step.is_integer())):
            raise ConfigError(f"{where}: an int range needs whole numbers, got low={low:g} high={high:g}")
        return SearchParam(key, kind, int(low), int(high), int(step) if step else None, log)
    return SearchParam(key, "log_uniform" if log else "uniform", low, high, step, log)
