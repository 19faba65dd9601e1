"""Assembling a run from a config, apart from the commands that run it (`jaxrl train`,
`eval`, `sweep`, `export`): the env, the algorithm, its evaluator and chunking (`build`), and
the population driver sized to the devices' memory (`members_per_call`, `make_population`,
`fit_to_memory`). Nothing here trains or writes a run folder.
"""

from __future__ import annotations

import difflib
import math
import sys
from typing import Any, NamedTuple, Sequence

from jaxrl import distributed, memory, population
from jaxrl import sweep as sweep_lib
from jaxrl.algos import REGISTRY as ALGOS
from jaxrl.algos.base import Algorithm
from jaxrl.config import Config
from jaxrl.envs import make_vec, normalized, registered_ids
from jaxrl.envs.host import (
    HostEnvSpec, JaxStandIn, UnknownHostEnvError, host_spec, open_host_env, resolve_backend,
)
from jaxrl.errors import ConfigError
from jaxrl.evaluation import episode_limit, make_evaluator
from jaxrl.experiment import population_ops


class Built(NamedTuple):
    """What `build` assembles from a config: nothing compiled or running yet."""

    algo: Algorithm
    env_params: Any
    evaluator: Any  # None for host envs: `HostPopulation` evaluates on its own envs
    updates_per_chunk: int
    eval_every_chunks: int
    host: HostEnvSpec | None = None  # set when the env is stepped on the host


def make_env(config: Config, num_envs: int, update_stats: bool = True,
             group_size: int = 1) -> tuple[Any, Any]:
    """The vectorised env with the wrappers `config.env` asks for."""
    return make_vec(config.env.id, num_envs, normalize_obs=config.env.normalize_obs,
                    normalize_reward=config.env.normalize_reward, gamma=config.algo.gamma,
                    update_stats=update_stats, env_kwargs=config.env.kwargs, group_size=group_size)


def host_stand_in(config: Config, spec: HostEnvSpec, num_envs: int, group_size: int = 1) -> tuple[Any, Any]:
    """The jittable stand-in of a host env with the normalisation `config.env` asks for: the
    algorithm is built on it, and the host loop applies its wrappers to the host envs' steps."""
    env = normalized(JaxStandIn(spec, num_envs, group_size), config.env.normalize_obs,
                     config.env.normalize_reward, config.algo.gamma)
    return env, env.default_params


def _host_spec(config: Config, backend: str) -> HostEnvSpec:
    """The host env's spec; unknown ids get the close jittable and gymnasium ids."""
    try:
        return host_spec(config.env.id, backend, config.env.kwargs, config.env.frame_stack)
    except UnknownHostEnvError as error:
        if config.env.backend == "auto":  # suggest the jittable ids as well as gymnasium's
            close = difflib.get_close_matches(config.env.id, registered_ids(), n=3, cutoff=0.5)
            hint = f" Close jittable ids: {', '.join(close)}." if close else ""
            raise UnknownHostEnvError(f"unknown env id {config.env.id!r}: neither jaxrl/gymnax (`jaxrl envs` "
                                      f"lists them) nor gymnasium knows it.{hint} {error}") from None
        raise


def envs_per_member(config: Config) -> int:
    """Env copies each member steps: `env.num_envs`, times GRPO's `group_size` rollouts per start."""
    return config.env.num_envs * getattr(config.algo, "group_size", 1)


HOST_LOOP_OPTIONS = ("host_groups", "learn_while_stepping", "device_turns", "frame_stack")


def _check_host_options(config: Config, algo: Algorithm, backend: str) -> None:
    """Refuses host-loop options that cannot apply to this env and algorithm."""
    env, per_member = config.env, envs_per_member(config)
    if backend == "jax":
        defaults = type(env)()
        for name in HOST_LOOP_OPTIONS:
            if getattr(env, name) != getattr(defaults, name):
                raise ConfigError(f"env.{name} applies to host envs, but {env.id} steps inside the compiled "
                                  f"program (env.backend={env.backend}); remove it or choose a host backend")
        return
    if per_member % env.host_groups:
        raise ConfigError(f"env.host_groups={env.host_groups} must divide each member's {per_member} envs "
                          f"(env.num_envs{' x algo.group_size' if per_member != env.num_envs else ''}); "
                          f"choose a divisor")
    if env.host_groups > 1 and (env.normalize_obs or env.normalize_reward):
        raise ConfigError(f"env.host_groups={env.host_groups} with env.normalize_obs/normalize_reward: the "
                          f"running statistics update with each step of all a member's envs at once; "
                          f"set env.host_groups: 1")
    if env.learn_while_stepping and algo.spec.replay_field is None:
        raise ConfigError(f"env.learn_while_stepping lets a replay learner (dqn) learn while the envs step; "
                          f"{algo.name} learns from the rollout it just collected; set it to false")


def build(config: Config) -> Built:
    """The algorithm, evaluator and chunking that `config` describes (nothing runs yet)."""
    if ":" in config.combine.strategy:  # a custom combiner that cannot be imported is refused now
        population_ops.load_combiner(config.combine.strategy)
    group = getattr(config.algo, "group_size", 1)  # GRPO: G rollouts from each start state
    backend = resolve_backend(config.env.id, config.env.backend, registered_ids())
    spec, evaluator = None, None
    if backend == "jax":
        env, env_params = make_env(config, envs_per_member(config), group_size=group)
    else:
        spec = _host_spec(config, backend)
        env, env_params = host_stand_in(config, spec, envs_per_member(config), group)
    algo = ALGOS[config.algo.name].make(config.algo, env, env_params, config.total_env_steps)
    _check_host_options(config, algo, backend)
    if backend == "jax":
        eval_env, _ = make_env(config, config.eval.episodes, update_stats=False)
        max_steps = config.eval.max_steps or episode_limit(env_params)
        evaluator = make_evaluator(algo, eval_env, env_params, max_steps, config.eval.deterministic)
    updates_per_chunk = max(1, config.log_every_env_steps // algo.env_steps_per_update)
    chunk_steps = updates_per_chunk * algo.env_steps_per_update
    eval_every = math.ceil(config.eval.every_env_steps / chunk_steps) if config.eval.every_env_steps else 0
    return Built(algo, env_params, evaluator, updates_per_chunk, eval_every, spec)


def make_population(config: Config, built: Built, devices: Sequence[Any] | None = None,
                    max_members_per_call: int | None = None,
                    programs: dict | None = None) -> population.Driver:
    """The population driver for `built` (every setting x seed of the config's sweep):
    compiled env steps, or host envs in workers. `programs`: see `jaxrl.members.Members`."""
    lay = sweep_lib.layout(config)
    data_parallel = config.combine.strategy == "data_parallel"
    if built.host is None:
        return population.Population(built.algo, lay.members, devices=devices, evaluator=built.evaluator,
                                     max_members_per_call=max_members_per_call, seed_index=lay.seed_index,
                                     data_parallel=data_parallel, programs=programs)
    from jaxrl.host_loop import HostPopulation

    spec = built.host

    def open_env(num_envs: int) -> Any:
        return open_host_env(spec, num_envs, num_workers=config.env.num_workers,
                             timeout=config.env.step_timeout, seed=config.seed)

    normalizing = config.env.normalize_obs or config.env.normalize_reward
    group = getattr(config.algo, "group_size", 1)
    wrapped = host_stand_in(config, spec, envs_per_member(config), group)[0] if normalizing else None
    return HostPopulation(
        built.algo, lay.members, wrapped_env=wrapped, seed_index=lay.seed_index, open_env=open_env,
        observation_space=spec.observation_space,
        envs_per_member=envs_per_member(config), seed=config.seed, eval_episodes=config.eval.episodes,
        eval_max_steps=config.eval.max_steps or spec.max_episode_steps or 1000,
        deterministic=config.eval.deterministic, devices=devices, data_parallel=data_parallel,
        programs=programs, groups=config.env.host_groups,
        learn_while_stepping=config.env.learn_while_stepping, device_turns=config.env.device_turns)


def members_per_call(config: Config, built: Built, memory_plan: memory.MemoryPlan,
                     requested: int | None) -> int | None:
    """How many members one compiled call may hold: `requested` (--max-population-chunk), or
    as many as fit in memory, or None when the whole population fits."""
    if built.host is not None:  # host envs: the population is one call; refuse what cannot fit
        memory.check(memory_plan)
        return requested
    if requested is not None:
        return requested
    fitting = memory.fitting_members(memory_plan, memory.host_free_bytes())
    if fitting is None:
        return None
    print(f"jaxrl: {memory_plan.describe()}: too much for one program, so the population runs "
          f"in sub-populations of at most {fitting} members, one after another "
          f"(--max-population-chunk overrides)", file=sys.stderr)
    return fitting


def fit_to_memory(config: Config, built: Built, pop: population.Population, hparams: Any,
                  devices: Sequence[Any] | None, memory_limit: int | None,
                  programs: dict | None = None) -> population.Population:
    """Checks the compiled program's own memory needs (rollouts and temporaries included)
    against the devices' memory before anything runs; when a call is too big, the population
    is rebuilt as sub-populations that fit (one more compile)."""
    import jax

    members = pop.members
    needed = pop.program_bytes(members.place(hparams))
    device_bytes = memory.per_device_bytes(devices if devices is not None else jax.devices(), memory_limit)
    if needed is None or device_bytes is None:
        return pop
    per_call = memory.fitting_per_call(needed, members.members_per_call, members.mesh.size, device_bytes)
    if per_call is None:
        return pop
    if distributed.is_primary():
        print(f"jaxrl: one training call of {members.members_per_call} members needs "
              f"{needed / 2**20:.1f} MiB per device (rollouts included), more than the "
              f"{device_bytes / 2**20:.1f} MiB free; running sub-populations of at most {per_call} members "
              f"one after another (--max-population-chunk overrides)", file=sys.stderr)
    return make_population(config, built, devices, per_call, programs)
