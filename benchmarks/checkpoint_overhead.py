"""Checkpoint cost: save seconds, size on disk, and share of training wall time.

Trains `configs/ppo_cartpole_reference.yaml` through `jaxrl.experiment.train` (what
`jaxrl train` runs, with its CPU defaults) at the default checkpoint interval and reads the
checkpoint records of `timings.jsonl`. Writes `<out>/checkpoint_overhead.md` and `.json`.

    python benchmarks/checkpoint_overhead.py --seeds 256 --steps 200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def folder_bytes(path: Path) -> int:
    """Total size of the files below `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200_000, help="env steps per seed")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-2core"))
    args = parser.parse_args(argv)

    from jaxrl.runtime import cpu_defaults

    cpu_defaults()
    os.environ["JAXRL_COMPILATION_CACHE"] = ""
    from jaxrl import config as config_lib
    from jaxrl.experiment.train import train

    config = config_lib.load(ROOT / "configs" / "ppo_cartpole_reference.yaml",
                             [f"seeds={args.seeds}", f"total_env_steps={args.steps}"])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        summary = train(config, run_dir, progress=False)
        records = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
        saves = [r["seconds"] for r in records if r["event"] == "checkpoint"]
        chunks = sum(r["seconds"] for r in records if r["event"] == "chunk")
        sizes = [folder_bytes(p) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    result = {
        "seeds": args.seeds, "env_steps_per_seed": summary["total_env_steps_per_seed"],
        "checkpoint_every_env_steps": config.checkpoint.every_env_steps, "saves": len(saves),
        "save_seconds_each": saves, "checkpoint_mib": round(max(sizes) / 2**20, 2),
        "training_seconds": round(chunks, 2), "wall_seconds": round(summary["wall_seconds"], 2),
        "share_of_training_time": round(sum(saves) / (chunks + sum(saves)), 4),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "versions": summary["versions"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        "# Checkpoint overhead: PPO CartPole-v1 (`ppo_cartpole_reference.yaml`)\n\n"
        f"- machine: {result['machine']}; jax {result['versions']['jax']}, "
        f"{result['versions']['device_count']} CPU devices\n\n"
        "| seeds | env steps / seed | interval (env steps / seed) | saves | seconds per save | checkpoint MiB | share of training time |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {args.seeds} | {result['env_steps_per_seed']:,} | {result['checkpoint_every_env_steps']:,} | "
        f"{len(saves)} | {', '.join(f'{s:.2f}' for s in saves)} | {result['checkpoint_mib']} | "
        f"{100 * result['share_of_training_time']:.2f}% |\n")
    (out / "checkpoint_overhead.md").write_text(table)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
