"""Typed, validated run configs: YAML file + `key=value` overrides -> frozen dataclasses.

A hand-written schema walker over dataclasses (rather than OmegaConf) because the `algo:`
section's schema depends on `algo.name`, and because every error must be one line that
names the key, the bad value and the fix. Types come from the dataclass annotations.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from jaxrl import sweep_spec
from jaxrl.algos import REGISTRY as ALGOS
from jaxrl.envs.host import BACKENDS
from jaxrl.errors import ConfigError

SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"  # package data: `load("ppo_cartpole")`


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The `env:` section: which env, how many copies per agent, and its wrappers."""

    id: str = "CartPole-v1"
    num_envs: int = 4
    normalize_obs: bool = False
    normalize_reward: bool = False
    kwargs: dict = dataclasses.field(default_factory=dict)  # passed to the env's constructor
    # where the env runs: jax (jittable, inside the compiled program), gymnasium (worker
    # processes), envpool, or auto (jax when jaxrl/gymnax knows the id, else gymnasium)
    backend: str = "auto"
    num_workers: int = 0  # host envs: worker processes (EnvPool: threads); 0: one per core
    frame_stack: int = 1  # host envs (gymnasium backend): the last k observations, stacked channel-last
    step_timeout: float = 60.0  # host envs: seconds before a silent worker counts as hung
    # host envs: each member's envs step in this many groups in turns, so the simulators step
    # one group while the device chooses another's actions (1: lockstep, act -> step -> act)
    host_groups: int = 1
    # host envs, replay learners (DQN): the gradient steps of one update run while the envs
    # step the next rollout, which acts with the networks from before them (one update behind)
    learn_while_stepping: bool = False
    # host envs: the members on each device take their updates in turns, so one device's
    # members learn while another's envs step (false: all members act and learn together)
    device_turns: bool = False

    def __post_init__(self):
        if not self.id.strip():
            raise ConfigError("env.id is empty; give an env id such as CartPole-v1 (`jaxrl envs` lists "
                              "the jittable ids; any gymnasium id works on the gymnasium backend)")
        if not 1 <= self.num_envs <= MAX_NUM_ENVS:
            raise ConfigError(f"env.num_envs must be at least 1 and at most {MAX_NUM_ENVS:,} (copies of the "
                              f"env per member), got {self.num_envs:,}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"env.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 0 <= self.num_workers <= MAX_NUM_WORKERS:
            raise ConfigError(f"env.num_workers must be >= 0 (0: one per core) and at most "
                              f"{MAX_NUM_WORKERS}, got {self.num_workers:,}")
        if not 1 <= self.host_groups <= MAX_NUM_ENVS:
            raise ConfigError(f"env.host_groups must be the number of groups a member's envs step in, at least 1 "
                              f"and at most {MAX_NUM_ENVS:,}, got {self.host_groups:,}")
        if not 1 <= self.frame_stack <= MAX_FRAME_STACK:
            raise ConfigError(f"env.frame_stack must be the number of observations stacked, at least 1 (none) and "
                              f"at most {MAX_FRAME_STACK}, got {self.frame_stack:,}")
        if not 0 < self.step_timeout <= MAX_STEP_TIMEOUT:
            raise ConfigError(f"env.step_timeout must be positive seconds, at most {MAX_STEP_TIMEOUT:g} "
                              f"(a day), got {self.step_timeout:g}")


# Past these no setting can be meant: every copy is an env in memory (host envs: each worker
# a process), and a step timeout beyond a day hides a hung worker for good.
MAX_NUM_ENVS, MAX_NUM_WORKERS, MAX_STEP_TIMEOUT, MAX_FRAME_STACK = 2**20, 1024, 86_400.0, 64


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The `eval:` section: greedy evaluation of every member during and after training."""

    episodes: int = 10  # per member
    every_env_steps: int = 0  # 0: only at the end
    max_steps: int = 0  # 0: the env's own time limit
    deterministic: bool = True
    video: bool = False  # after each periodic evaluation, a GIF of the best member's episode

    def __post_init__(self):
        if self.episodes < 1:
            raise ConfigError(f"eval.episodes must be at least 1, got {self.episodes}")
        for key in ("every_env_steps", "max_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"eval.{key} must be >= 0, got {getattr(self, key)}")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """The `checkpoint:` section: orbax checkpoints of the whole population's state."""

    every_env_steps: int = 100_000  # per member, rounded up to whole chunks; 0: only at the end
    keep_last: int = 2  # plus the best one (by mean return) when keep_best
    keep_best: bool = True
    # Replay buffers can dwarf the rest of the state. Without them a checkpoint is small, but
    # a resumed run refills its buffers before learning again (so it is not bit-exact).
    replay_buffer: bool = True

    def __post_init__(self):
        if self.every_env_steps < 0:
            raise ConfigError(f"checkpoint.every_env_steps must be >= 0, got {self.every_env_steps}")
        if self.keep_last < 1:
            raise ConfigError(f"checkpoint.keep_last must be at least 1, got {self.keep_last}")


SCHEDULE_KEYS = ("every_env_steps", "every_updates", "every_episodes")


def _check_schedule(section: Any, name: str) -> None:
    """A `pbt:` or `combine:` section's schedule: every `every_*` >= 0, at most one set."""
    for key in SCHEDULE_KEYS:
        if getattr(section, key) < 0:
            raise ConfigError(f"{name}.{key} must be >= 0 (0: off), got {getattr(section, key)}")
    chosen = [f"{name}.{key}={getattr(section, key)}" for key in SCHEDULE_KEYS if getattr(section, key)]
    if len(chosen) > 1:
        raise ConfigError(f"{name}: set at most one of {', '.join(f'{name}.{k}' for k in SCHEDULE_KEYS)} "
                          f"(the schedule), got {' and '.join(chosen)}")


@dataclasses.dataclass(frozen=True)
class PBTConfig:
    """The `pbt:` section: population-based training (exploit/explore) between chunks.

    Its schedule is one of `every_env_steps` or `every_updates` (per member, rounded up to
    whole chunks) or `every_episodes` (at the first chunk end where the members have finished
    that many episodes each on average since the last exploit); all 0: off."""

    every_env_steps: int = 0
    every_updates: int = 0
    every_episodes: int = 0
    fraction: float = 0.25  # the bottom fraction copies the top fraction
    hyperparameters: tuple[str, ...] = ()  # vmappable fields to perturb, e.g. [lr, ent_coef]
    factors: tuple[float, ...] = (0.8, 1.2)  # each perturbed value is multiplied by one of these
    score: str = "episode_return"  # the chunk metric that ranks members (higher is better)

    def __post_init__(self):
        _check_schedule(self, "pbt")
        if not 0.0 < self.fraction <= 0.5:
            raise ConfigError(f"pbt.fraction must lie in (0, 0.5] (bottom and top must not overlap), "
                              f"got {self.fraction}")
        if not self.factors or any(f <= 0 for f in self.factors):
            raise ConfigError(f"pbt.factors must be positive numbers, got {list(self.factors)}")

    @property
    def enabled(self) -> bool:
        """Whether PBT runs (one of its `every_*` is set)."""
        return any(getattr(self, key) for key in SCHEDULE_KEYS)


COMBINERS = ("none", "mean", "weighted_mean", "best", "fixed", "data_parallel")


@dataclasses.dataclass(frozen=True)
class CombineConfig:
    """The `combine:` section: members' networks combined between chunks, or (data_parallel)
    one learner fed by every member's experience.

    `strategy` is a built-in (see `COMBINERS`) or `"module:function"`, a function
    `(population_state, stats) -> population_state` imported when the run is built (see
    `jaxrl.experiment.population_ops`). The schedule is one of `every_env_steps`,
    `every_updates` (per member, rounded up to whole chunks) or `every_episodes` (the members'
    mean episodes finished since the last combination); `data_parallel` acts at every gradient
    step instead and takes none."""

    strategy: str = "none"  # none | mean | weighted_mean | best | fixed | data_parallel | module:function
    every_env_steps: int = 0
    every_updates: int = 0
    every_episodes: int = 0
    member: int = 0  # for `fixed`
    temperature: float = 1.0  # for `weighted_mean`: softmax of score / temperature
    score: str = "episode_return"

    def __post_init__(self):
        custom = ":" in self.strategy
        if custom and not all(part.strip() for part in self.strategy.split(":", 1)):
            raise ConfigError(f"combine.strategy {self.strategy!r} must name a function as "
                              f"module:function, e.g. my_combiners:keep_best")
        if not custom and self.strategy not in COMBINERS:
            raise ConfigError(f"combine.strategy must be one of {', '.join(COMBINERS)} or a function "
                              f"given as module:function, got {self.strategy!r}")
        _check_schedule(self, "combine")
        scheduled = any(getattr(self, key) for key in SCHEDULE_KEYS)
        if self.strategy == "data_parallel" and scheduled:
            raise ConfigError("combine.strategy data_parallel averages gradients at every gradient step; "
                              "remove combine.every_env_steps, every_updates and every_episodes")
        if self.strategy not in ("none", "data_parallel") and not scheduled:
            raise ConfigError(f"combine.strategy {self.strategy} needs a schedule: set one of "
                              f"combine.every_env_steps, combine.every_updates or combine.every_episodes")
        if self.temperature <= 0:
            raise ConfigError(f"combine.temperature must be positive, got {self.temperature}")


OBJECTIVES = ("final_iqm", "final_mean", "final_median", "final_min", "eval_auc")
SAMPLERS = ("tpe", "random", "qmc", "cmaes")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The `search:` section: what `jaxrl sweep` searches over with Optuna (see jaxrl.tune)."""

    # dotted key -> {type: log_uniform | uniform | int | categorical, low, high, step, log, choices}
    space: dict = dataclasses.field(default_factory=dict)
    objective: str = "final_iqm"  # maximised, over each trial's seeds; eval_auc: mean of every evaluation
    sampler: str = "tpe"
    pruner: str = "none"
    pruner_startup_trials: int = 4  # completed trials before any pruning
    pruner_warmup_env_steps: int = 0  # per member: no pruning before this many env steps
    seed: int | None = None  # the sampler's seed (default: the config's `seed`)

    def __post_init__(self):
        for key, allowed in (("objective", OBJECTIVES), ("sampler", SAMPLERS), ("pruner", PRUNERS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"search.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.pruner_startup_trials < 0 or self.pruner_warmup_env_steps < 0:
            raise ConfigError("search.pruner_startup_trials and search.pruner_warmup_env_steps must be >= 0")


KNOWN_LOGGERS = ("tensorboard", "wandb")


@dataclasses.dataclass(frozen=True)
class WandbConfig:
    """The `wandb:` section, used when `loggers` lists wandb."""

    project: str = "jaxrl"
    entity: str | None = None
    mode: str = "offline"  # offline (no network; `wandb sync` later) | online | disabled

    def __post_init__(self):
        if self.mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"wandb.mode must be offline, online or disabled, got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run. `algo` is the `Config` of the algorithm that `algo.name` names."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    algo: Any = None
    total_env_steps: int = 500_000  # per member
    seeds: int = 8  # population size
    seed: int = 0  # base seed; member i uses (seed, i)
    log_every_env_steps: int = 25_000  # per member; one chunk of updates between logs
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    loggers: tuple[str, ...] = ()  # extra viewers: tensorboard, wandb; metrics.csv is always written
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)
    # dotted key -> values (or {low, high, num, log}); `static:` for keys that change the
    # program. See jaxrl.sweep.
    sweep: dict = dataclasses.field(default_factory=dict)
    pbt: PBTConfig = dataclasses.field(default_factory=PBTConfig)
    combine: CombineConfig = dataclasses.field(default_factory=CombineConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)  # for `jaxrl sweep`

    def __post_init__(self):
        if self.combine.strategy == "fixed" and not 0 <= self.combine.member < self.seeds:
            raise ConfigError(f"combine.member must lie in 0..{self.seeds - 1}, got {self.combine.member}")
        if self.combine.strategy == "data_parallel" and self.pbt.enabled:
            raise ConfigError("combine.strategy data_parallel trains one learner, so pbt has no members "
                              "to choose between; turn off pbt (its every_*) or choose another combiner")
        unknown = [name for name in self.loggers if name not in KNOWN_LOGGERS]
        if unknown:
            raise ConfigError(f"unknown logger(s) {', '.join(unknown)} in loggers; available: "
                              f"{', '.join(KNOWN_LOGGERS)} (metrics.csv is always written)")
        for key in ("total_env_steps", "seeds", "log_every_env_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key, high in LIMITS.items():
            _bounded(_read(self, key), 0, high, key)


# Upper bounds past which a value cannot be meant and would overflow or exhaust memory
# (e.g. eval.episodes sizes arrays; a seed beyond 32 bits would wrap onto another seed's key).
LIMITS = {"seed": 2**32 - 1, "seeds": 2**20, "total_env_steps": 10**13, "log_every_env_steps": 10**13,
          "eval.episodes": 10**6, "eval.max_steps": 10**8, "eval.every_env_steps": 10**13,
          "checkpoint.every_env_steps": 10**13, "checkpoint.keep_last": 10**4}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Checks `value` against annotation `tp`, converting where no information is lost."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {_shown(value)}")
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {_shown(value)}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {_shown(value)}")
    if tp is int:
        number = _number(value)
        if number is not None and math.isfinite(number) and float(number).is_integer() \
                and not isinstance(value, bool):
            return _bounded(int(number), -MAX_INT, MAX_INT, key)
        raise ConfigError(f"{key} must be an integer, got {_shown(value)}")
    if tp is float:
        number = _number(value)
        if number is None or isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {_shown(value)}")
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {_shown(value)}")
        return float(_bounded(number, -MAX_FLOAT, MAX_FLOAT, key))
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {_shown(value)}")
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


# Every float reaches the device as float32 and every count an int64 at most: a value beyond
# them would silently become inf or wrap, so it is refused where it is read.
MAX_FLOAT = float(np.finfo(np.float32).max)
MAX_INT = 2**62


def _bounded(number: float | int, low: float | int, high: float | int, key: str) -> float | int:
    """`number` if it lies in [low, high], else a ConfigError naming the range."""
    if not low <= number <= high:
        raise ConfigError(f"{key}={_figure(number)} is out of range; it must lie in "
                          f"[{_figure(low)}, {_figure(high)}]")
    return number


def _figure(number: float | int) -> str:
    """A number as an error shows it: whole numbers in full up to 15 digits, else `%g`."""
    if isinstance(number, int) and abs(number) < 10**15:
        return str(number)
    return f"{number:g}"


def _shown(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: its repr, cut short (a config may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _number(value: Any) -> float | int | None:
    """A number from a number or a numeric string ('1e-3', which YAML leaves as text)."""
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Builds dataclass `cls` from a mapping, refusing unknown keys with a suggestion."""
    where = f"{prefix}." if prefix else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'the config'} must be a mapping of keys, got {_shown(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {where}{close[0]}?" if close else ""
            shown = key if isinstance(key, str) and key.isprintable() and len(key) <= 60 else _shown(key)
            raise ConfigError(f"unknown config key {where}{shown}{hint} "
                              f"(known: {', '.join(sorted(fields))})")
    kwargs = {key: _coerce(value, hints[key], f"{where}{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:  # validation inside nested library dataclasses
        raise ConfigError(f"{prefix}: {error}") from None


def _algo_config(data: Any) -> Any:
    if data is None or not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"algo.name is required; one of: {', '.join(sorted(ALGOS))}")
    name = data["name"]
    if name not in ALGOS:
        close = difflib.get_close_matches(str(name), list(ALGOS), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"unknown algorithm algo.name={name!r}{hint} "
                          f"(available: {', '.join(sorted(ALGOS))})")
    return _build(ALGOS[name].Config, data, "algo")


def from_dict(data: dict) -> Config:
    """Validates a plain mapping (as parsed from YAML) into a `Config`; a sweep's every value
    is validated as it would be in a single run."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    algo_data = data.get("algo")
    if isinstance(algo_data, dict) and algo_data.get("name") in ALGOS:
        data = sweep_spec.lift_inline_lists(data, sweep_spec.scalar_fields(ALGOS[algo_data["name"]].Config))
    config = _single(data)
    fields = ALGOS[config.algo.name].HParams._fields
    wrong = [name for name in config.pbt.hyperparameters if name not in fields]
    if wrong:
        raise ConfigError(f"pbt.hyperparameters: {', '.join(wrong)} cannot be perturbed; "
                          f"{config.algo.name}'s vmappable hyperparameters are {', '.join(fields)}")
    if config.pbt.enabled and not config.pbt.hyperparameters:
        raise ConfigError("pbt.hyperparameters must name what to perturb, e.g. [lr]")
    if config.search.space:
        _check_search(config, data)
    if not config.sweep:
        return config
    vmapped, static = sweep_spec.split(config.sweep)
    in_program = [key for key in config.sweep if key != sweep_spec.STATIC]  # vmapped: grid or settings
    if in_program and config.combine.strategy == "data_parallel":
        raise ConfigError(f"combine.strategy data_parallel averages every member's gradients into one "
                          f"learner, so a vmapped sweep ({', '.join(in_program)}) cannot vary them; move "
                          f"the keys under sweep.static: (one program each) or drop data_parallel")
    base = {k: v for k, v in data.items() if k != "sweep"}

    def validated(key: str, values: list) -> list:  # each value as its single run reads it
        return [_read(_single(sweep_spec.with_values(base, {key: value})), key) for value in values]

    vmapped = {key: validated(key, values) for key, values in vmapped.items()}
    static = {key: validated(key, values) for key, values in static.items()}
    settings = [{**({"name": s.name} if s.name else {}), **{k: validated(k, [v])[0] for k, v in s.values.items()}}
                for s in sweep_spec.listed(config.sweep)]
    checked = {**vmapped, sweep_spec.STATIC: static, **({sweep_spec.SETTINGS: settings} if settings else {})}
    sweep_spec.check(checked, sweep_spec.vmappable_keys(ALGOS[config.algo.name], config.env.normalize_reward))
    members = config.seeds * (len(settings) or math.prod(len(values) for values in vmapped.values()))
    _bounded(members, 1, LIMITS["seeds"], f"seeds x the sweep's {members // config.seeds:,} settings (members)")
    return dataclasses.replace(config, sweep={**vmapped, **({sweep_spec.SETTINGS: settings} if settings else {}),
                                              **({sweep_spec.STATIC: static} if static else {})})


def _check_search(config: Config, data: dict) -> None:
    """A search space must stand alone (no sweep, PBT or combiner beside it), and each end of
    each range, each choice, must be a value the key accepts in a single run."""
    for section, default in (("sweep", {}), ("pbt", PBTConfig()), ("combine", CombineConfig())):
        if getattr(config, section) != default:
            raise ConfigError(f"search: cannot be combined with {section}: (jaxrl sweep chooses every "
                              f"trial's settings itself); remove the {section}: section")
    base = {k: v for k, v in data.items() if k not in ("sweep", "search")}
    for param in sweep_spec.parse_space(config.search.space):
        what = "choice" if param.kind == "categorical" else "bound"
        for value in param.bounds:
            try:
                read = _read(_single(sweep_spec.with_values(base, {param.key: value})), param.key)
            except ConfigError as error:
                raise ConfigError(f"search.space.{param.key}: {what} {value!r} is not a value this key "
                                  f"takes ({error})") from None
            if param.kind in ("uniform", "log_uniform") and isinstance(read, int) and not isinstance(read, bool):
                raise ConfigError(f"search.space.{param.key} is a whole number; use type: int")


def _read(config: Any, key: str) -> Any:
    """The value of dotted `key` in a config, as plain YAML-ready data."""
    value = config
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return to_dict(value)


def _single(data: dict) -> Config:
    """A `Config` from a mapping, the sweep section taken as it is."""
    data = dict(data)
    algo = _algo_config(data.pop("algo", None))
    config = _build(Config, data, "")
    return dataclasses.replace(config, algo=algo)


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Applies `a.b.c=value` strings to a nested mapping; values are parsed as YAML."""
    data = _deep_copy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. algo.lr=1e-3")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        if not all(keys):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = parse_yaml(raw, f"override {path.strip()}") if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {key} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return data


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


# A config is a few kilobytes; these bounds keep a hostile or broken file (an alias "billion
# laughs", a deeply nested list, a multi-gigabyte file) from exhausting memory before it is read.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # after expanding aliases
MAX_YAML_DEPTH = 32


def parse_yaml(text: str, where: str) -> Any:
    """`yaml.safe_load` bounded in size and depth after alias expansion, counted on the
    composed node graph (aliases share nodes there, so counting costs no expansion)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, 0, where)
        if size > MAX_YAML_NODES:
            raise ConfigError(f"{where} expands to {size:,} YAML values (through its &anchors/*aliases), more "
                              f"than the {MAX_YAML_NODES:,} a config may hold; write the values out")
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply (at most {MAX_YAML_DEPTH} levels)") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], depth: int, where: str) -> int:
    """How many values `node` holds once its aliases are expanded (memoised per node)."""
    if depth > MAX_YAML_DEPTH:
        raise ConfigError(f"{where} is nested too deeply (more than {MAX_YAML_DEPTH} levels, or an "
                          f"alias that contains itself)")
    if id(node) not in sizes:
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes, depth + 1, where) for child in children)
    return sizes[id(node)]


def _config_text(path: Path) -> str:
    """A config file's text: UTF-8 (or UTF-16/32 with a byte-order mark), at most
    MAX_CONFIG_BYTES; anything else is a ConfigError naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is {size:,} bytes; a config is at most "
                              f"{MAX_CONFIG_BYTES:,} bytes of YAML (is it the right file?)")
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    boms = {codecs.BOM_UTF32_LE: "utf-32", codecs.BOM_UTF32_BE: "utf-32", codecs.BOM_UTF8: "utf-8-sig",
            codecs.BOM_UTF16_LE: "utf-16", codecs.BOM_UTF16_BE: "utf-16"}
    encoding = next((name for bom, name in boms.items() if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = None
    if text is None or any(ch in text for ch in "\x00\ufffe\uffff"):
        raise ConfigError(f"config file {path} is not YAML text (binary, or an encoding other than "
                          f"UTF-8); save it as UTF-8 YAML")
    return text


def read_yaml(path: str | Path) -> dict:
    """Parses a config file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = parse_yaml(_config_text(path), f"config file {path}")
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())[:300]
        raise ConfigError(f"config file {path} is not valid YAML: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (env, algo, ...)")
    return data


def shipped_configs() -> list[str]:
    """The names of the configs shipped inside the package (`ppo_cartpole`, ...)."""
    return sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """The YAML file a config argument means: an existing file first, else the shipped config
    of that bare name (`ppo_cartpole` or `ppo_cartpole.yaml`), from any working folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml")
    shipped = shipped_configs()
    if len(path.parts) == 1 and name in shipped:
        return SHIPPED_CONFIGS / f"{name}.yaml"
    listing = f"shipped configs: {', '.join(shipped)}"
    if len(path.parts) > 1:  # a path: say so, and point at the shipped copy of the same name
        hint = (f"{name} is a shipped config: give its bare name `{name}`" if name in shipped
                else f"give the path of a YAML file or a shipped config's name ({listing})")
        raise ConfigError(f"config file {path} does not exist; {hint}")
    close = difflib.get_close_matches(name, shipped, n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"unknown config {str(name_or_path)!r}: no such file and no shipped config of "
                      f"that name; {guess}{listing} (or give the path of a YAML file)")


def load(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Reads, overrides and validates a YAML config: a file, or a shipped config by name."""
    return from_dict(apply_overrides(read_yaml(config_path(name_or_path)), overrides))


def to_dict(config: Any) -> Any:
    """The config as plain YAML-ready data (tuples become lists), every default filled in."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """`{"algo": {"lr": 1}}` -> `{"algo.lr": 1}` (empty mappings stay values)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


# Keys a resumed run may change: they alter neither the saved state nor the training that
# follows it. Anything else (shapes, algorithm, hyperparameters, budget) makes another run.
RESUMABLE_CHANGES = ("eval.", "checkpoint.", "loggers", "wandb.", "env.num_workers", "env.step_timeout")
FIXED_ON_RESUME = ("checkpoint.replay_buffer",)  # decides what the saved checkpoints hold


def _flat_with_defaults(config: Config | dict) -> dict[str, Any]:
    """A config's flat keys; a dict (a config recorded by an earlier jaxrl) gets the defaults
    of keys added since, so a new key left at its default is no change."""
    if isinstance(config, dict):
        try:
            config = from_dict(config)
        except ConfigError:
            return flatten(config)
    return flatten(to_dict(config))


def state_breaking_changes(saved: Config | dict, requested: Config | dict) -> list[str]:
    """Keys whose values differ between two configs (or their `to_dict` forms) in a way a
    saved state cannot follow."""
    old, new = (_flat_with_defaults(c) for c in (saved, requested))
    return sorted(f"{key} ({old.get(key)!r} -> {new.get(key)!r})"
                  for key in set(old) | set(new)
                  if old.get(key) != new.get(key)
                  and (not key.startswith(RESUMABLE_CHANGES) or key in FIXED_ON_RESUME))
