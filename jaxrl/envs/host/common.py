"""What every host env backend shares: the step record, episode statistics, space conversion
and the jittable stand-in that lets an algorithm be built for an env it never steps itself.

A host env is a batch of `num_envs` non-jittable envs stepped outside JAX (gymnasium worker
processes, EnvPool). It follows the same conventions as the jittable `VecEnv`: auto-reset in
the step that ends an episode, `final_obs` holding the observation that step reached,
`terminated` and `truncated` kept apart, and raw episode returns and lengths reported on
the step an episode ends.
"""

from __future__ import annotations

import abc
import difflib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from jaxrl.errors import ConfigError, JaxrlError


class HostEnvError(JaxrlError):
    """A host env that cannot be built or stepped: a worker crashed, hung, or raised."""


class UnknownHostEnvError(HostEnvError, ConfigError):
    """An env id that a host backend does not know: a config error, caught before any env starts."""


class HostStep(NamedTuple):
    """One step of every env in the batch, as numpy arrays with a leading [num_envs] axis."""

    obs: np.ndarray  # after auto-reset: the next episode's first observation where one ended
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray  # the observation this step reached, before any auto-reset
    episode_done: np.ndarray
    episode_return: np.ndarray  # of the episode that ended here (raw rewards)
    episode_length: np.ndarray


class HostVecEnv(abc.ABC):
    """The interface the host training loop uses: both backends implement the abstract
    methods and inherit `step` and the context manager."""

    num_envs: int
    env_id: str
    max_episode_steps: int | None

    @abc.abstractmethod
    def observation_space(self, params: Any = None) -> Any:
        """One env's observation space, as a gymnax space."""

    @abc.abstractmethod
    def action_space(self, params: Any = None) -> Any:
        """One env's action space, as a gymnax space."""

    @abc.abstractmethod
    def reset(self, seeds: np.ndarray) -> np.ndarray:
        """Resets every env with its own seed (an int per env); returns first observations."""

    @abc.abstractmethod
    def step_async(self, actions: np.ndarray) -> None:
        """Hands the actions over and returns at once; `step_wait` collects the step."""

    @abc.abstractmethod
    def step_wait(self) -> HostStep:
        """Waits for the step `step_async` started (same-step auto-reset, `final_obs` kept)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stops whatever steps the envs; safe to call twice."""

    def step(self, actions: np.ndarray) -> HostStep:
        """`step_async` then `step_wait`: one synchronous step of every env."""
        self.step_async(actions)
        return self.step_wait()

    def __enter__(self) -> "HostVecEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EpisodeCounter:
    """Running raw return and length of each env's current episode (numpy, host side)."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, np.float64)
        self.lengths = np.zeros(num_envs, np.int64)

    def reset(self) -> None:
        self.returns[:] = 0
        self.lengths[:] = 0

    def record(self, reward: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Adds one step; returns (episode_return, episode_length) and restarts finished envs."""
        self.returns += reward
        self.lengths += 1
        returns = self.returns.astype(np.float32)
        lengths = self.lengths.astype(np.int32)
        self.returns[done] = 0
        self.lengths[done] = 0
        return returns, lengths


def to_gymnax_space(space: Any, where: str) -> Any:
    """A gymnasium Discrete/Box as the gymnax space the algorithms read."""
    import gymnasium

    if isinstance(space, gymnasium.spaces.Discrete):
        if int(space.start) != 0:
            raise HostEnvError(f"{where}: Discrete action spaces must start at 0, got start={space.start}")
        return spaces.Discrete(int(space.n))
    if isinstance(space, gymnasium.spaces.Box):
        return spaces.Box(np.asarray(space.low), np.asarray(space.high), tuple(space.shape), space.dtype)
    raise HostEnvError(f"{where} has a {type(space).__name__} space; jaxrl host envs support "
                       f"Discrete and Box spaces (wrap the env to flatten others)")


class HostEnvParams(NamedTuple):
    """The part of gymnax's env params that algorithms read (GRPO's horizon, evaluation), and
    the host's observations that a `JaxStandIn` reset hands out (None: zeros, for shapes)."""

    max_steps_in_episode: int
    obs: Any = None


class HostEnvSpec(NamedTuple):
    """What is known of a host env before any worker starts: read from one env built in
    this process, so bad ids and missing extras fail before anything else happens."""

    env_id: str
    backend: str  # gymnasium | envpool
    observation_space: Any  # gymnax spaces
    action_space: Any
    max_episode_steps: int | None
    kwargs: dict
    frame_stack: int = 1  # observations stacked channel-last by the gymnasium backend (1: none)


class JaxStandIn:
    """A jittable view of a host env, so `algos.<name>.make` and `init` work unchanged and
    jaxrl's jittable wrappers (normalisation) apply to what the host envs return.

    It steps nothing: `reset` hands out `params.obs` (zeros without them) and `step` hands
    out the host step it is given as its action. Wrapped, `step(key, state, host_step, params)`
    is that host step with the wrappers applied, their statistics kept in the state.
    """

    def __init__(self, spec: HostEnvSpec, num_envs: int, group_size: int = 1):
        self.spec, self.num_envs, self.group_size = spec, num_envs, group_size
        self.default_params = HostEnvParams(spec.max_episode_steps or 1000)

    def observation_space(self, params: Any = None) -> Any:
        return self.spec.observation_space

    def action_space(self, params: Any = None) -> Any:
        return self.spec.action_space

    def reset(self, key: Any, params: Any) -> tuple[Any, Any]:
        if params.obs is not None:
            return params.obs, jnp.zeros((), jnp.int32)
        space = self.spec.observation_space  # float64 (MuJoCo) as JAX holds it: float32 without x64
        dtype = jax.dtypes.canonicalize_dtype(space.dtype)
        return jnp.zeros((self.num_envs,) + tuple(space.shape), dtype), jnp.zeros((), jnp.int32)

    def reset_from(self, key: Any, params: Any, like_state: Any) -> tuple[Any, Any]:
        return self.reset(key, params)

    def step(self, key: Any, state: Any, action: Any, params: Any) -> Any:
        if not isinstance(action, HostStep):
            raise RuntimeError(f"{self.spec.env_id} is a host env: it is stepped by the host loop "
                               f"(jaxrl.host_loop), not inside a compiled program")
        info = {"final_observation": action.final_obs, "episode_done": action.episode_done,
                "episode_return": action.episode_return, "episode_length": action.episode_length}
        return action.obs, state, action.reward, action.terminated, action.truncated, info


def unknown_id_message(env_id: str, known: list[str], backend: str) -> str:
    if not env_id.strip():
        return f"unknown {backend} env id {env_id!r}: env.id is empty; give an id such as CartPole-v1."
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    if env_id.startswith(("/", "~", ".")) or "\\" in env_id:
        hint += " env.id names a registered env (such as CartPole-v1), not a file."
    return f"unknown {backend} env id {env_id!r}.{hint}"
