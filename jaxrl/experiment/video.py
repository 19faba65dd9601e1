"""Episode videos as GIFs: gymnax's own renderers (matplotlib) for jittable envs, gymnasium's
rgb_array frames for host envs; no display needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxrl.errors import ConfigError

# Env names gymnax's Visualizer draws.
GYMNAX_RENDERED = ("Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0",
                   "MountainCarContinuous-v0", "Catch-bsuite", "Asterix-MinAtar",
                   "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
                   "SpaceInvaders-MinAtar", "Pong-misc", "PointRobot-misc", "MetaMaze-misc",
                   "FourRooms-misc")


CLASSIC_CONTROL = GYMNAX_RENDERED[:5]  # drawn by gymnasium's pygame renderers


def renderer_for(env: Any, env_id: str) -> str:
    """The renderer for a single env, or a clear error when it has none."""
    name = getattr(env, "name", None)
    if name in CLASSIC_CONTROL:
        try:
            import pygame  # noqa: F401
        except ImportError:
            raise ConfigError(f"videos of {env_id} need the video extra: "
                              f"pip install 'jaxrl[video]'") from None
    if name in GYMNAX_RENDERED:
        return "gymnax"
    raise ConfigError(f"env {env_id} has no renderer, so --video cannot draw it; videos work "
                      f"for {', '.join(GYMNAX_RENDERED)}")


def write_gif(env: Any, env_params: Any, states: Sequence[Any], returns: np.ndarray,
              path: str | Path) -> Path:
    """One frame per state, titled with the step and the return so far."""
    import matplotlib

    matplotlib.use("Agg")
    from gymnax.visualize import Visualizer

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Visualizer(env, env_params, list(states), list(np.asarray(returns, np.float64))).animate(str(path))
    return path


def write_frames_gif(frames: Sequence[np.ndarray], returns: np.ndarray, path: str | Path,
                     fps: int = 30) -> Path:
    """rgb frames (gymnasium's `render()`) as a GIF, each marked with the step and return so far."""
    from PIL import Image, ImageDraw

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = []
    for t, (frame, value) in enumerate(zip(frames, np.asarray(returns, np.float64))):
        image = Image.fromarray(np.asarray(frame, np.uint8))
        ImageDraw.Draw(image).text((5, 5), f"t={t}  return={value:.1f}", fill=(255, 255, 255))
        images.append(image)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
