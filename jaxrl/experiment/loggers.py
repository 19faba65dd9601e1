"""Optional loggers fed between chunks (never from inside the compiled loop).

metrics.csv and timings.jsonl are always written by the run folder; these add viewers.
Each gets, per logged point, the per-seed values of every metric and their aggregate
across seeds (mean, min, max, IQM), and the resolved config once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jaxrl.analysis import iqm
from jaxrl.errors import ConfigError

class Logger(Protocol):
    def log_config(self, config: dict[str, Any]) -> None: ...
    def log_point(self, env_steps: int, per_seed: dict[str, np.ndarray]) -> None: ...
    def close(self) -> None: ...


def aggregates(values: np.ndarray) -> dict[str, float]:
    """Mean, min, max and IQM over the seeds that have a value (NaN-free)."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return {}
    return {"mean": float(present.mean()), "min": float(present.min()),
            "max": float(present.max()), "iqm": iqm(present)}


class TensorBoardLogger:
    """Event files under `run_dir/tensorboard`: `<stat>/<metric>` and `seed_<i>/<metric>`."""

    def __init__(self, run_dir: Path, per_seed_limit: int = 64):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.per_seed_limit = per_seed_limit  # beyond this, only aggregates (keeps files small)

    def log_config(self, config: dict[str, Any]) -> None:
        import yaml

        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "\n```", 0)

    def log_point(self, env_steps: int, per_seed: dict[str, np.ndarray]) -> None:
        for metric, values in per_seed.items():
            for stat, value in aggregates(values).items():
                self.writer.add_scalar(f"{stat}/{metric}", value, env_steps)
            if values.size <= self.per_seed_limit:
                for seed, value in enumerate(values):
                    if not np.isnan(value):
                        self.writer.add_scalar(f"seed_{seed}/{metric}", float(value), env_steps)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def require(names: tuple[str, ...]) -> None:
    """Fails early, before a run folder exists, when a logger's extra is not installed."""
    if "tensorboard" in names:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ConfigError("loggers: [tensorboard] needs the tensorboard extra: "
                              "pip install 'jaxrl[tensorboard]'") from None


def make_loggers(names: tuple[str, ...], run_dir: Path) -> list[Logger]:
    """The loggers a config's `loggers:` list names (validated by `jaxrl.config`)."""
    return [TensorBoardLogger(run_dir) for name in names if name == "tensorboard"]
