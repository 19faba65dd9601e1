"""EnvPool as a host env: `num_envs` copies of one env stepped by EnvPool's C++ thread pool.

`step_async` hands the actions to EnvPool (`send`) and returns at once, so the envs step in
C++ threads while the caller computes; `step_wait` collects them (`recv`), ordered by env id.

EnvPool resets an env on the step *after* the one that ended its episode (that step ignores
its action). `EnvPoolBatch` turns this into jaxrl's same-step convention without a second
round trip to EnvPool's threads: the pool holds `standby` envs beyond the `num_envs` the caller
sees, already reset. When a caller's env ends its episode, a standby env takes its place at
once (its first observation becomes `obs`), and the env that ended is reset by EnvPool during
the next step, in parallel with the other envs, to stand by in turn. Only when more episodes end
in one step than envs stand by are the rest reset at once with `reset(env_id)` (a synchronous
call, ~0.1 ms). `final_obs` is the observation the ending step reached; no step is wasted or
counted twice. EnvPool never sets both `terminated` and `truncated` (gymnasium does when the
last allowed step also terminates).

Seeds: EnvPool seeds each env when the pool is built and cannot reseed a live env, so every
`reset(seeds)` builds a new pool with EnvPool's per-env seed list (the constructor builds
none), the standby envs seeded from a `SeedSequence` of `seeds`. Each `reset(seeds)` thus starts
exactly the first episodes a fresh pool with those seeds would, and envs given equal seeds start
identical; later episodes come from whichever env stood by, so they are reproducible from the
seeds but not tied to one seed each. A build costs ~0.1 ms per Box2D env but ~0.1 s per Atari
env (ROM loading), paid on every reset, which is why Atari pools keep no standby envs by
default (their episodes are long, so the synchronous resets are rare). Seeds are reduced modulo
2**31 (EnvPool takes int32 seeds). EnvPool's random streams differ from gymnasium's: a seed
gives the same episode on both backends only in distribution.

`ALE/<Game>-v5` ids map to EnvPool's `<Game>-v5` with EnvPool's standard preprocessing (84x84
grey, frame skip 4 with max-pooling, a stack of 4, up to 30 no-op starts), plus the two
settings that make it match the gymnasium backend's `ALE/<Game>-v5` (sticky actions with
`repeat_action_probability=0.25`, no FIRE on reset); `kwargs` override any of them. The frame
stack is moved channel-last, [84, 84, 4] uint8, as on the gymnasium backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxrl.envs import env_kwargs
from jaxrl.envs.env_kwargs import one_line
from jaxrl.envs.host.common import (
    EpisodeCounter, HostEnvError, HostEnvSpec, HostStep, HostVecEnv, UnknownHostEnvError, to_gymnax_space,
    unknown_id_message,
)
from jaxrl.errors import ConfigError

INSTALL_HINT = 'pip install "jaxrl[envpool]"'
ATARI_PREFIX = "ALE/"
# What the gymnasium backend's ALE/<Game>-v5 does and EnvPool's defaults do not.
ATARI_GYMNASIUM_MATCH = {"repeat_action_probability": 0.25, "use_fire_reset": False}
SEED_MODULUS = 2**31
RESERVED = ("num_envs", "batch_size", "num_threads", "seed", "env_seed")  # set by jaxrl, not env.kwargs
NO_ENVS = np.zeros(0, np.int32)


def import_envpool() -> Any:
    """Imports EnvPool on first use, so jaxrl works without it until an EnvPool env is asked for."""
    try:
        import envpool
    except ImportError as error:
        raise HostEnvError(f"the EnvPool backend needs the envpool package ({error}); "
                           f"{INSTALL_HINT}") from None
    return envpool


def envpool_task_id(env_id: str, known: list[str]) -> str:
    """EnvPool's name for `env_id` (`ALE/Pong-v5` -> `Pong-v5`), or a HostEnvError listing close
    matches when EnvPool does not ship it."""
    task = env_id[len(ATARI_PREFIX):] if env_id.startswith(ATARI_PREFIX) else env_id
    if task in known:
        return task
    raise UnknownHostEnvError(f"{unknown_id_message(task, known, 'envpool')} EnvPool ships "
                              f"{len(known)} envs (envpool.list_all_envs()); for other ids use the gymnasium "
                              f"backend (jaxrl.envs.host.gymnasium_pool.GymnasiumPool)")


def is_atari(envpool_module: Any, task_id: str) -> bool:
    """Whether EnvPool implements `task_id` with its Atari (ALE) engine."""
    import_path = envpool_module.registration.registry.specs[task_id][0]
    return import_path.startswith("envpool.atari")


def gymnasium_observation_space(env_id: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """The gymnasium env's own observation space when gymnasium has `env_id` with this shape and
    dtype (EnvPool's bounds can be wrong, e.g. LunarLander's low of 1.2e-38), else None."""
    try:
        import gymnasium

        if env_id not in gymnasium.registry:
            return None
        env = gymnasium.make(env_id)
        space = env.observation_space
        env.close()
    except Exception:  # any missing extra or broken env: keep EnvPool's space
        return None
    if tuple(space.shape) != shape or np.dtype(space.dtype) != np.dtype(dtype):
        return None
    return space


def channel_last_space(space: Any) -> Any:
    """A channel-first gymnasium Box ([C, H, W]) as the same Box channel-last ([H, W, C])."""
    import gymnasium

    return gymnasium.spaces.Box(np.moveaxis(space.low, 0, -1), np.moveaxis(space.high, 0, -1),
                                dtype=space.dtype)


def normalize_seeds(seeds: Any, num_envs: int) -> list[int]:
    """One int32-range seed per env, as EnvPool's per-env seed list needs."""
    array = np.asarray(seeds, np.int64).reshape(-1)
    if array.size != num_envs:
        raise HostEnvError(f"reset needs one seed per env ({num_envs}), got {array.size}")
    return (array % SEED_MODULUS).tolist()


def standby_seeds(seeds: list[int], count: int) -> list[int]:
    """Seeds for the standby envs, a deterministic function of the callers' env seeds."""
    return [int(x) % SEED_MODULUS for x in np.random.SeedSequence(seeds).generate_state(count)]


def default_standby(num_envs: int, atari: bool) -> int:
    """Standby envs kept by default: one per eight envs, none for Atari (see module doc)."""
    return 0 if atari else -(-num_envs // 8)


class EnvPoolBatch(HostVecEnv):
    """`num_envs` copies of `env_id` in one EnvPool (see module doc); the `HostVecEnv` protocol.

    `seed` gives env i the seed `seed + i` when `reset` is called without seeds; `num_threads`
    is EnvPool's thread count (0: one per core); `standby` the number of extra envs kept reset
    for same-step auto-reset (None: `default_standby`); `kwargs` go to `envpool.make` (e.g.
    `reward_clip`, `episodic_life`, `max_episode_steps`).
    """

    per_env_seeds = True  # reset(seeds) gives each env exactly its own seed (by rebuilding the pool)

    def __init__(self, env_id: str, num_envs: int, *, seed: int = 0, num_threads: int = 0,
                 standby: int | None = None, kwargs: dict | None = None):
        if num_envs < 1:
            raise HostEnvError(f"num_envs must be at least 1, got {num_envs}")
        if standby is not None and standby < 0:
            raise HostEnvError(f"standby must be 0 or more, got {standby}")
        self._envpool = import_envpool()
        self.env_id, self.num_envs, self.seed, self.num_threads = env_id, num_envs, seed, num_threads
        self.task_id = envpool_task_id(env_id, self._envpool.list_all_envs())
        self.atari = is_atari(self._envpool, self.task_id)
        self.standby = default_standby(num_envs, self.atari) if standby is None else standby
        self.make_kwargs = {**(ATARI_GYMNASIUM_MATCH if self.atari else {}), **(kwargs or {})}
        if kwargs:  # the options EnvPool's config has, less those jaxrl sets itself
            defaults = self._envpool.make_spec(self.task_id).config._asdict()
            env_kwargs.check_defaults(kwargs, {k: v for k, v in defaults.items() if k not in RESERVED},
                                      f"envpool {env_id}")
        try:  # builds no env: checks the kwargs and reads spaces and limits
            spec = self._envpool.make_spec(self.task_id, num_envs=num_envs, num_threads=num_threads,
                                           **self.make_kwargs)
        except (TypeError, ValueError, AssertionError) as error:
            raise ConfigError(f"envpool {env_id} rejected the env options "
                              f"{one_line(self.make_kwargs, 120)}: {one_line(error)}") from None
        self.max_episode_steps = getattr(spec.config, "max_episode_steps", None)
        obs_space, act_space = spec.gymnasium_observation_space, spec.gymnasium_action_space
        if self.atari:
            obs_space = channel_last_space(obs_space)
        else:
            obs_space = gymnasium_observation_space(env_id, tuple(obs_space.shape), obs_space.dtype) or obs_space
        self._obs_space = to_gymnax_space(obs_space, f"{env_id}'s observation space")
        self._action_space = to_gymnax_space(act_space, f"{env_id}'s action space")
        self._action_shape = (num_envs,) + tuple(act_space.shape)
        self._action_size = int(np.prod(self._action_shape))
        self._action_dtype = act_space.dtype
        self._pool: Any = None
        self._waiting = False
        self._episodes = EpisodeCounter(num_envs)
        # Pool env i plays the caller's env j where self._slot[j] == i; standby envs wait reset,
        # their first observations in self._first_obs; self._resetting reset during the next step.
        self._slot = np.arange(num_envs, dtype=np.int32)
        self._standby: list[int] = []
        self._first_obs: np.ndarray | None = None
        self._resetting = NO_ENVS
        self._row_buffer = np.zeros(num_envs + self.standby, np.int64)
        self._count = np.arange(num_envs + self.standby)

    def observation_space(self, params: Any = None) -> Any:
        """One env's observation space as a gymnax space (`params` ignored, as in gymnax)."""
        return self._obs_space

    def action_space(self, params: Any = None) -> Any:
        """One env's action space as a gymnax space."""
        return self._action_space

    def _build(self, seeds: list[int]) -> None:
        """(Re)builds the EnvPool with one seed per env (the callers' envs, then standby envs)."""
        self._drop_pool()
        try:
            self._pool = self._envpool.make(self.task_id, env_type="gymnasium", num_envs=len(seeds),
                                            num_threads=self.num_threads, seed=seeds, **self.make_kwargs)
        except Exception as error:
            raise HostEnvError(f"{self.env_id}: envpool could not build {len(seeds)} envs: "
                               f"{type(error).__name__}: {error}") from None

    def _drop_pool(self) -> None:
        """Collects any step in flight and releases the pool's threads and envs."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._waiting:
            self._waiting = False
            try:
                pool.recv()
            except Exception:
                pass
        pool.close()

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        """EnvPool's observation batch (a fresh array) as ours: channel-last for Atari."""
        return np.ascontiguousarray(np.moveaxis(obs, 1, -1)) if self.atari else obs

    def reset(self, seeds: np.ndarray | None = None) -> np.ndarray:
        """Builds a new pool whose env i is seeded by `seeds[i]` (default `seed + i`), plus the
        standby envs, and returns the first observations."""
        if seeds is None:
            seeds = self.seed + np.arange(self.num_envs)
        seeds = normalize_seeds(seeds, self.num_envs)
        self._build(seeds + standby_seeds(seeds, self.standby))
        obs, info = self._call("reset", self._pool.reset)
        obs = obs[self._rows(info["env_id"])]
        self._episodes.reset()
        self._slot = np.arange(self.num_envs, dtype=np.int32)
        self._standby = list(range(self.num_envs, self.num_envs + self.standby))
        self._first_obs = obs
        self._resetting = NO_ENVS
        return self._obs(obs[:self.num_envs].copy())

    def _call(self, what: str, function: Any, *args: Any) -> Any:
        """Runs one EnvPool call, turning its errors into a HostEnvError naming the env."""
        try:
            return function(*args)
        except Exception as error:
            raise HostEnvError(f"{self.env_id}: envpool failed during '{what}': "
                               f"{type(error).__name__}: {error}") from None

    def _rows(self, env_ids: np.ndarray) -> np.ndarray:
        """Where each pool env's result sits in a batch EnvPool returned (EnvPool returns envs in
        the order they finished, each with its `env_id`)."""
        rows = self._row_buffer
        rows[env_ids] = self._count[:len(env_ids)]
        return rows

    def step_async(self, actions: np.ndarray) -> None:
        """Hands the actions (and the resets of last step's ended envs) to EnvPool's threads and
        returns at once; `step_wait` collects."""
        if self._pool is None:
            raise HostEnvError(f"{self.env_id}: no live env pool: call reset(seeds) before stepping "
                               f"(after close, reset builds a new pool)")
        if self._waiting:
            raise HostEnvError(f"{self.env_id}: step_async called twice without step_wait")
        if not (isinstance(actions, np.ndarray) and actions.shape == self._action_shape
                and actions.dtype == self._action_dtype and actions.flags.c_contiguous):
            actions = np.asarray(actions)
            if actions.size != self._action_size:
                raise HostEnvError(f"{self.env_id}: expected actions of shape {self._action_shape}, "
                                   f"got {actions.shape}")
            actions = np.ascontiguousarray(actions.reshape(self._action_shape), self._action_dtype)
        env_ids = self._slot
        if self._resetting.size:  # EnvPool resets an ended env on its next step, ignoring the action
            actions = np.concatenate([actions, actions[:self._resetting.size]])
            env_ids = np.concatenate([self._slot, self._resetting])
        self._call("step", self._pool.send, actions, env_ids)
        self._waiting = True

    def step_wait(self) -> HostStep:
        """Collects the step; envs whose episode ended get a standby env's (or, when none is
        left, a synchronous reset's) first observation (same-step auto-reset)."""
        if not self._waiting:
            raise HostEnvError(f"{self.env_id}: step_wait called without step_async")
        self._waiting = False
        obs, reward, terminated, truncated, info = self._call("step", self._pool.recv)
        row = self._rows(info["env_id"])
        if self._resetting.size:  # last step's ended envs are reset now: they stand by
            self._first_obs[self._resetting] = obs[row[self._resetting]]
            self._standby.extend(self._resetting.tolist())
        mine = row[self._slot]
        obs, reward, terminated, truncated = obs[mine], reward[mine], terminated[mine], truncated[mine]
        final_obs = self._obs(obs)
        next_obs = final_obs.copy()
        done = terminated | truncated
        self._resetting = NO_ENVS
        if done.any():
            next_obs[done] = self._obs(self._replace_ended(np.flatnonzero(done)))
        reward = reward.astype(np.float32, copy=False)
        returns, lengths = self._episodes.record(reward, done)
        return HostStep(next_obs, reward, terminated, truncated, final_obs, done, returns, lengths)

    def _replace_ended(self, ended: np.ndarray) -> np.ndarray:
        """First observations (EnvPool's layout) for the caller's envs `ended`: standby envs take
        their places while any are left (the ended envs reset during the next step); the rest
        are reset now."""
        swapped = min(len(ended), len(self._standby))
        fresh, self._standby = self._standby[:swapped], self._standby[swapped:]
        self._resetting = self._slot[ended[:swapped]].copy()
        self._slot[ended[:swapped]] = fresh
        first = self._first_obs[fresh]
        if swapped < len(ended):
            now = self._slot[ended[swapped:]]
            reset_obs, info = self._call("reset", self._pool.reset, now)
            first = np.concatenate([first, reset_obs[self._rows(info["env_id"])[now]]])
        return first

    def close(self) -> None:
        """Releases EnvPool's threads and envs; safe to call twice."""
        self._drop_pool()

    def __del__(self) -> None:
        """Releases the pool if the caller forgot to close it (never raises)."""
        try:
            self._drop_pool()
        except Exception:
            pass


def envpool_spec(env_id: str, kwargs: dict | None = None) -> HostEnvSpec:
    """Spaces and time limit of an EnvPool env id (no env is built)."""
    batch = EnvPoolBatch(env_id, 1, kwargs=kwargs)
    return HostEnvSpec(env_id, "envpool", batch.observation_space(), batch.action_space(),
                       batch.max_episode_steps, dict(kwargs or {}))
