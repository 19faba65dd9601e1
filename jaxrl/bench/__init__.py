"""`jaxrl bench SUITE`: named benchmark suites whose tables and plots are the README's figures.

- `throughput`: steady SPS, compile seconds and peak memory per algorithm and population size;
- `peers`: the same workloads with identical hyperparameters against the in-repo single-file
  reference, rejax, stable-baselines3 and sbx, side by side in one session, with ours/theirs ratios;
- `quality`: each shipped config's greedy-eval IQM next to the reference figures;
- `rainbow`: what each Rainbow part costs in steady SPS, against plain DQN;
- `scale`: steady SPS against population size and device count, compile time with and without
  the persistent compilation cache;
- `checkpoint`: each save's seconds, the checkpoint's size and the saves' share of training time;
- `host`: random-action steps/s of gymnasium's vector envs, jaxrl's host backends and EnvPool;
- `sweep`: wall time of one Optuna sweep batched into populations, one trial at a time, and
  one `jaxrl train` process per trial;
- `search`: a batched sweep's best trial against the shipped config, trained again on fresh seeds.

Every measurement is a fresh process; results go to `benchmarks/results/<machine kind>/`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

from jaxrl.bench.common import BUDGETS, Budget
from jaxrl.errors import ConfigError

SUITES = ("throughput", "peers", "quality", "rainbow", "scale", "checkpoint", "host", "sweep", "search")
DEFAULT_REPEATS = {"tiny": 1, "quick": 1, "full": 3}
REPO = Path(__file__).resolve().parents[2]


def configs_folder() -> Path:
    """The shipped configs (package data, so an installed jaxrl has them too)."""
    from jaxrl.config import SHIPPED_CONFIGS

    return SHIPPED_CONFIGS


def default_out(machine: dict[str, Any]) -> Path:
    """`benchmarks/results/<kind>/` of the checkout (or of the working directory)."""
    root = REPO if (REPO / "benchmarks").is_dir() else Path.cwd()
    return root / "benchmarks" / "results" / machine["kind"]


def run_suite(suite: str, budget: str = "quick", out: str | Path | None = None, repeats: int | None = None,
              timeout: float = 1800.0, only: Sequence[str] = (), **options: Any) -> list[Path]:
    """Runs one suite on this machine and returns the files it wrote (Markdown, JSON, PNGs)."""
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}: choose one of {', '.join(SUITES)}")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    if repeats is not None and repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")
    module = importlib.import_module(f"jaxrl.bench.{suite}")
    known = _names(module)
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ConfigError(f"unknown {suite} row(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    from jaxrl.bench import common

    machine = common.machine_info(common.probe_devices())
    out_dir = Path(out) if out else default_out(machine)
    chosen = Budget(budget, repeats or DEFAULT_REPEATS[budget])
    return module.run(chosen, out_dir, machine, timeout, only=tuple(only), **options)


def _names(module: Any) -> list[str]:
    """The row names a suite's `--only` accepts."""
    rows = getattr(module, "WORKLOADS", None) or getattr(module, "ROWS", ())
    return [getattr(row, "name", None) or getattr(row, "id") for row in rows]
