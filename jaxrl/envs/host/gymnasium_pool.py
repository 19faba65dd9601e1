"""Any gymnasium env, `num_envs` copies stepped by W worker processes through shared memory.

Each worker owns a contiguous slice of the envs and steps them in a plain loop (a
synchronous batch), so on a small machine the cost is one message per worker per step, not
one process per env as in gymnasium's `AsyncVectorEnv`. Actions, observations, final
observations, rewards and flags live in shared memory; the pipes carry only commands and
errors. Workers ignore Ctrl-C (the parent shuts them down), die with their parent
(`PR_SET_PDEATHSIG`), and a worker that raises, crashes or hangs turns into one
`HostEnvError` naming the env, the worker and its own exception.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import time
import types
import weakref
from multiprocessing import connection
from typing import Any

import numpy as np
from gymnax.environments import spaces

from jaxrl.env_worker import EXTRA_FOR_MODULE, Buffers, make_gymnasium_env, worker
from jaxrl.envs import env_kwargs
from jaxrl.envs.env_kwargs import one_line
from jaxrl.envs.host.common import (
    EpisodeCounter, HostEnvError, HostEnvSpec, HostStep, HostVecEnv, UnknownHostEnvError, to_gymnax_space,
    unknown_id_message,
)


def check_env_id(env_id: str, kwargs: dict | None = None, frame_stack: int = 1) -> Any:
    """Builds one env in this process to read its spaces, turning a mistyped id or a missing
    extra into a clear message before any worker starts."""
    import gymnasium

    check_kwargs(env_id, kwargs)
    try:
        return env_kwargs.construct(lambda: make_gymnasium_env(env_id, kwargs, frame_stack), kwargs,
                                    f"gymnasium {env_id}")
    except gymnasium.error.Error as error:
        if isinstance(error, gymnasium.error.DependencyNotInstalled):
            raise _missing_package(env_id, error) from None
        if not (isinstance(error, (gymnasium.error.UnregisteredEnv, gymnasium.error.DeprecatedEnv))
                or "Malformed" in str(error)):
            raise HostEnvError(f"gymnasium could not make {env_id}: {one_line(error)}") from None
        # NameNotFound, VersionNotFound, NamespaceNotFound, or a malformed id ('', '../x')
        known = list(gymnasium.registry)
        raise UnknownHostEnvError(f"{unknown_id_message(env_id, known, 'gymnasium')} ({one_line(error)}) "
                                  f"`jaxrl envs` lists the jittable ids; gymnasium's are in "
                                  f"gymnasium.registry") from None
    except ModuleNotFoundError as error:
        raise _missing_package(env_id, error) from None


def _missing_package(env_id: str, error: Exception) -> HostEnvError:
    module = getattr(error, "name", None) or ""
    extra = next((x for m, x in EXTRA_FOR_MODULE.items() if m.lower() in (module + str(error)).lower()),
                 "box2d" if "box2d" in str(error).lower() else None)
    fix = f'pip install "jaxrl[{extra}]"' if extra else "install the package it names"
    return HostEnvError(f"{env_id} needs a package that is not installed ({one_line(error)}); {fix}")


# gymnasium.make's own keywords, taken besides the env constructor's
MAKE_KWARGS = ("max_episode_steps", "disable_env_checker")


def check_kwargs(env_id: str, kwargs: dict | None) -> None:
    """Refuses keys of `kwargs` that neither gymnasium.make nor the env's registered
    constructor (its entry point) takes, before anything is built: one ConfigError line."""
    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    if not kwargs or env_id not in gymnasium.registry:
        return  # an unknown id is reported by gymnasium.make; ALE ids are registered on first make
    entry_point = gymnasium.spec(env_id).entry_point
    try:
        creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    except Exception:  # a missing extra: gymnasium.make names it
        return
    env_kwargs.check(kwargs, creator, f"gymnasium {env_id}", also=MAKE_KWARGS)


def gymnasium_spec(env_id: str, kwargs: dict | None = None, frame_stack: int = 1) -> HostEnvSpec:
    """Spaces and time limit of a gymnasium env id, read from one env built here."""
    probe = check_env_id(env_id, kwargs, frame_stack)
    try:
        return HostEnvSpec(
            env_id, "gymnasium", to_gymnax_space(probe.observation_space, f"{env_id}'s observation space"),
            to_gymnax_space(probe.action_space, f"{env_id}'s action space"),
            probe.spec.max_episode_steps if probe.spec else None, dict(kwargs or {}), frame_stack)
    finally:
        probe.close()


@contextlib.contextmanager
def _main_module_hidden():
    """`spawn` re-runs the parent's main script in each worker, which would start the user's
    whole program again in a script without `if __name__ == "__main__"`. Workers need only
    jaxrl and gymnasium, so the main module is hidden while they start. (A user's own env
    must therefore be importable: gymnasium's `"my_module:MyEnv-v0"` id form imports it.)"""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _shutdown(processes: list, conns: list, buffers: Buffers) -> None:
    """Stops every worker (politely, then by force) and frees the shared memory."""
    for conn in conns:
        try:
            conn.send(("close", None))
        except (BrokenPipeError, OSError):
            pass
    deadline = time.monotonic() + 2.0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)
    for conn in conns:
        conn.close()
    buffers.close(unlink=True)


class GymnasiumPool(HostVecEnv):
    """`num_envs` copies of gymnasium env `env_id` over `num_workers` processes (see module doc).

    `timeout` bounds how long one step or reset may take before a worker counts as hung.
    """

    def __init__(self, env_id: str, num_envs: int, num_workers: int = 0, *,
                 kwargs: dict | None = None, timeout: float = 60.0, frame_stack: int = 1):
        if num_envs < 1:
            raise HostEnvError(f"num_envs must be at least 1, got {num_envs}")
        spec = gymnasium_spec(env_id, kwargs, frame_stack)
        self.env_id, self.num_envs, self.timeout = env_id, num_envs, timeout
        self.max_episode_steps = spec.max_episode_steps
        self._obs_space, self._action_space = spec.observation_space, spec.action_space
        obs_shape, obs_dtype = tuple(spec.observation_space.shape), np.dtype(spec.observation_space.dtype)
        if isinstance(spec.action_space, spaces.Discrete):
            act_shape, act_dtype = (), np.dtype(np.int64)
        else:
            act_shape, act_dtype = tuple(spec.action_space.shape), np.dtype(spec.action_space.dtype)
        workers = min(num_workers or os.cpu_count() or 1, num_envs)
        bounds = np.linspace(0, num_envs, workers + 1).astype(int)
        self.slices = list(zip(bounds[:-1], bounds[1:]))
        layout = {"obs": ((num_envs,) + obs_shape, obs_dtype.str),
                  "final_obs": ((num_envs,) + obs_shape, obs_dtype.str),
                  "actions": ((num_envs,) + act_shape, act_dtype.str),
                  "reward": ((num_envs,), "<f4"), "terminated": ((num_envs,), "|b1"),
                  "truncated": ((num_envs,), "|b1")}
        self._buffers = Buffers(layout)
        context = mp.get_context("spawn")  # never fork a process that runs JAX's threads
        self._conns, self._processes = [], []
        with _main_module_hidden():
            for index, (lo, hi) in enumerate(self.slices):
                parent, child = context.Pipe()
                process = context.Process(
                    target=worker, name=f"jaxrl-env-{index}", daemon=True,
                    args=(index, env_id, dict(kwargs or {}), frame_stack, int(lo), int(hi), layout,
                          self._buffers.names(), child))
                process.start()
                child.close()
                self._conns.append(parent)
                self._processes.append(process)
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._conns, self._buffers)
        self._episodes = EpisodeCounter(num_envs)
        self._waiting = False
        self._gather("start")

    @property
    def num_workers(self) -> int:
        return len(self._processes)

    def observation_space(self, params: Any = None) -> Any:
        return self._obs_space

    def action_space(self, params: Any = None) -> Any:
        return self._action_space

    def _gather(self, what: str) -> None:
        """Waits for every worker's answer; any error, death or hang closes the pool and raises."""
        pending = dict(enumerate(self._conns))
        deadline = time.monotonic() + self.timeout
        while pending:
            left = deadline - time.monotonic()
            sentinels = {self._processes[i].sentinel: i for i in pending}
            ready = connection.wait(list(pending.values()) + list(sentinels), timeout=max(left, 0))
            if not ready:
                worker = next(iter(pending))
                self._fail(worker, f"did not answer '{what}' within {self.timeout:g} s (hung)")
            for item in ready:
                if item in sentinels:
                    worker = sentinels[item]
                    if worker in pending and not self._conns[worker].poll():
                        self._fail(worker, f"died during '{what}' (exit code {self._exit_code(worker)})")
                    continue
                worker = next(i for i, c in pending.items() if c is item)
                try:
                    status, payload = item.recv()
                except (EOFError, OSError):
                    self._fail(worker, f"died during '{what}' (exit code {self._exit_code(worker)})")
                if status == "error":
                    env_index, message, trace = payload
                    self._fail(worker, f"raised {message} in env {env_index} during '{what}'\n"
                                       f"worker traceback (last lines):\n" +
                               "\n".join(trace.strip().splitlines()[-6:]))
                del pending[worker]

    def _exit_code(self, worker: int) -> int | None:
        """A dead worker's exit code (negative: the signal that killed it), once reaped."""
        self._processes[worker].join(1.0)
        return self._processes[worker].exitcode

    def _fail(self, worker: int, what: str) -> None:
        lo, hi = self.slices[worker]
        self.close()
        raise HostEnvError(f"{self.env_id}: env worker {worker} (envs {lo}-{hi - 1}) {what}")

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise HostEnvError(f"{self.env_id}: the env pool is closed")

    def _send(self, command: str, payloads: list | None = None) -> None:
        for index, conn in enumerate(self._conns):
            try:
                conn.send((command, None if payloads is None else payloads[index]))
            except (BrokenPipeError, OSError):
                self._fail(index, f"died before '{command}' (exit code {self._exit_code(index)})")

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        """Resets every env with its own seed (an int per env); returns first observations."""
        self._check_open()
        seeds = np.asarray(seeds, np.int64).reshape(self.num_envs)
        self._send("reset", [seeds[lo:hi] for lo, hi in self.slices])
        self._gather("reset")
        self._episodes.reset()
        return self._buffers.arrays["obs"].copy()

    def step_async(self, actions: np.ndarray) -> None:
        """Hands the actions to the workers and returns at once; `step_wait` collects."""
        self._check_open()
        self._buffers.arrays["actions"][:] = np.asarray(actions).reshape(self._buffers.arrays["actions"].shape)
        self._send("step")
        self._waiting = True

    def step_wait(self) -> HostStep:
        self._gather("step")
        self._waiting = False
        a = self._buffers.arrays
        done = a["terminated"] | a["truncated"]
        returns, lengths = self._episodes.record(a["reward"], done)
        return HostStep(a["obs"].copy(), a["reward"].copy(), a["terminated"].copy(),
                        a["truncated"].copy(), a["final_obs"].copy(), done, returns, lengths)

    def close(self) -> None:
        """Stops the workers and frees shared memory; safe to call twice."""
        self._finalizer()
