"""What runs inside a host env worker process: build gymnasium envs, step them on command.

It lives at the top of the package, apart from `jaxrl.envs`, so that a worker process
imports only numpy and gymnasium — never JAX or gymnax, which would cost each worker
seconds and hundreds of MB. `jaxrl.envs.host.gymnasium_pool` starts and talks to workers.
"""

from __future__ import annotations

import ctypes
import signal
import traceback
from multiprocessing import shared_memory
from typing import Any

import numpy as np

EXTRA_FOR_MODULE = {"Box2D": "box2d", "ale_py": "atari", "opencv": "atari", "cv2": "atari",
                    "pygame": "video", "mujoco": "mujoco", "imageio": "mujoco"}
ATARI_FRAME_STACK = 4


def make_gymnasium_env(env_id: str, kwargs: dict | None = None, frame_stack: int = 1) -> Any:
    """One gymnasium env; `ALE/...` ids get the standard Atari preprocessing (Machado et al.
    2018 settings: 84x84 grey, frame skip 4, 30 no-op starts) and a stack of 4 frames; other
    ids a stack of `frame_stack` observations (1: none). Stacks are channel-last."""
    import gymnasium

    kwargs = dict(kwargs or {})
    if env_id.startswith("ALE/"):
        import ale_py

        gymnasium.register_envs(ale_py)
        env = gymnasium.make(env_id, frameskip=1, **kwargs)
        env = gymnasium.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, noop_max=30)
        return stacked(env, ATARI_FRAME_STACK)
    env = gymnasium.make(env_id, **kwargs)
    return stacked(env, frame_stack) if frame_stack > 1 else env


def fold_frames(frames: np.ndarray) -> np.ndarray:
    """[k, *shape] stacked observations as one channel-last observation: k grey [H, W] frames
    as [H, W, k], k [H, W, C] images as [H, W, k * C], k vectors [d] as [k * d]."""
    if frames.ndim == 3:
        return np.moveaxis(frames, 0, -1)
    return np.moveaxis(frames, 0, -2).reshape(frames.shape[1:-1] + (-1,))


def stacked(env: Any, num_frames: int) -> Any:
    """`env` observing its last `num_frames` observations, folded channel-last (`fold_frames`);
    an episode starts with its first observation repeated."""
    import gymnasium

    env = gymnasium.wrappers.FrameStackObservation(env, num_frames, padding_type="reset")
    space = env.observation_space
    folded = gymnasium.spaces.Box(fold_frames(space.low), fold_frames(space.high), dtype=space.dtype)
    return gymnasium.wrappers.TransformObservation(env, lambda obs: fold_frames(np.asarray(obs)), folded)


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this worker when its parent dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Buffers:
    """Named shared-memory arrays, created by the parent and attached by workers by name."""

    def __init__(self, layout: dict[str, tuple[tuple[int, ...], str]], names: dict[str, str] | None = None):
        self.layout, self.blocks, self.arrays = layout, {}, {}
        for key, (shape, dtype) in layout.items():
            size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            block = (shared_memory.SharedMemory(create=True, size=size) if names is None
                     else shared_memory.SharedMemory(name=names[key]))
            self.blocks[key] = block
            self.arrays[key] = np.ndarray(shape, dtype, buffer=block.buf)

    def names(self) -> dict[str, str]:
        return {key: block.name for key, block in self.blocks.items()}

    def close(self, unlink: bool) -> None:
        self.arrays.clear()
        for block in self.blocks.values():
            block.close()
            if unlink:
                try:
                    block.unlink()
                except FileNotFoundError:
                    pass


def worker(index: int, env_id: str, kwargs: dict, frame_stack: int, lo: int, hi: int, layout: dict,
           names: dict, conn: Any) -> None:
    """Steps envs [lo, hi) on command: 'reset' (seeds), 'step' (actions in shared memory), 'close'."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    buffers, current = None, lo
    try:
        buffers = Buffers(layout, names)
        a = buffers.arrays
        envs = [make_gymnasium_env(env_id, kwargs, frame_stack) for _ in range(lo, hi)]
        conn.send(("ok", None))
        while True:
            command, payload = conn.recv()
            if command == "close":
                break
            if command == "reset":
                for current, env in enumerate(envs, lo):
                    a["obs"][current], _ = env.reset(seed=int(payload[current - lo]))
            elif command == "step":  # per-env work in Python lists, one slice write per array
                actions = list(a["actions"][lo:hi]) if a["actions"].ndim > 1 else a["actions"][lo:hi].tolist()
                rewards, terminations, truncations = [], [], []
                for current, (env, action) in enumerate(zip(envs, actions), lo):
                    obs, reward, terminated, truncated, _ = env.step(action)
                    a["final_obs"][current] = obs
                    if terminated or truncated:
                        obs, _ = env.reset()
                    a["obs"][current] = obs
                    rewards.append(reward)
                    terminations.append(terminated)
                    truncations.append(truncated)
                a["reward"][lo:hi], a["terminated"][lo:hi], a["truncated"][lo:hi] = (
                    rewards, terminations, truncations)
            conn.send(("ok", None))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return
    except BaseException as error:  # report anything the env raised, then stop
        try:
            conn.send(("error", (current, f"{type(error).__name__}: {error}", traceback.format_exc())))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if buffers is not None:
            buffers.close(unlink=False)
