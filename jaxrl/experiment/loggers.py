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
    def log_point(self, env_steps: int, per_seed: dict[str, np.ndarray],
                  groups: dict[str, np.ndarray] | None = None) -> None: ...
    def close(self) -> None: ...


def aggregates(values: np.ndarray) -> dict[str, float]:
    """Mean, min, max and IQM over the seeds that have a value (NaN-free)."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return {}
    return {"mean": float(present.mean()), "min": float(present.min()),
            "max": float(present.max()), "iqm": iqm(present)}


def scalars(per_seed: dict[str, np.ndarray], per_seed_limit: int,
            groups: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """The scalars of one logged point: `<stat>/<metric>` across members and `seed_<i>/<metric>`
    (up to `per_seed_limit` members); with `groups` (a sweep's settings -> their members),
    the same under `<setting>/` per setting instead."""
    out: dict[str, float] = {}
    for prefix, members in (groups or {"": None}).items():
        where = f"{prefix}/" if prefix else ""
        for metric, values in per_seed.items():
            values = values if members is None else values[members]
            out.update({f"{where}{stat}/{metric}": value for stat, value in aggregates(values).items()})
            if values.size <= per_seed_limit:
                out.update({f"{where}seed_{seed}/{metric}": float(value)
                            for seed, value in enumerate(values) if not np.isnan(value)})
    return out


class TensorBoardLogger:
    """Event files under `run_dir/tensorboard`: `<stat>/<metric>` and `seed_<i>/<metric>`."""

    def __init__(self, run_dir: Path, per_seed_limit: int = 64):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.per_seed_limit = per_seed_limit  # beyond this, only aggregates (keeps files small)

    def log_config(self, config: dict[str, Any]) -> None:
        import yaml

        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "\n```", 0)

    def log_point(self, env_steps: int, per_seed: dict[str, np.ndarray],
                  groups: dict[str, np.ndarray] | None = None) -> None:
        for key, value in scalars(per_seed, self.per_seed_limit, groups).items():
            self.writer.add_scalar(key, value, env_steps)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run in `run_dir/wandb` (offline by default: no network, no account;
    `wandb sync` uploads it later). Same keys as TensorBoard, x = env steps per seed."""

    def __init__(self, run_dir: Path, settings: Any, per_seed_limit: int = 64):
        import wandb

        self.run = wandb.init(project=settings.project, entity=settings.entity, mode=settings.mode,
                              dir=str(run_dir), name=run_dir.name,
                              settings=wandb.Settings(silent=True, console="off"))
        self.per_seed_limit = per_seed_limit

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config)

    def log_point(self, env_steps: int, per_seed: dict[str, np.ndarray],
                  groups: dict[str, np.ndarray] | None = None) -> None:
        self.run.log(scalars(per_seed, self.per_seed_limit, groups), step=int(env_steps))

    def close(self) -> None:
        self.run.finish()


EXTRAS = {"tensorboard": "tensorboardX", "wandb": "wandb"}


def require(names: tuple[str, ...]) -> None:
    """Fails early, before a run folder exists, when a logger's extra is not installed."""
    import importlib.util

    for name in names:
        if importlib.util.find_spec(EXTRAS[name]) is None:
            raise ConfigError(f"loggers: [{name}] needs the {name} extra: "
                              f"pip install 'jaxrl[{name}]'")


def make_loggers(config: Any, run_dir: Path) -> list[Logger]:
    """The loggers `config.loggers` names (validated by `jaxrl.config`)."""
    makers = {"tensorboard": lambda: TensorBoardLogger(run_dir),
              "wandb": lambda: WandbLogger(run_dir, config.wandb)}
    return [makers[name]() for name in config.loggers]
