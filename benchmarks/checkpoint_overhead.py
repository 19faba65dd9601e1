"""Checkpoint cost: save seconds, size on disk, and share of training wall time.

Trains each case through `jaxrl.experiment.train` (what `jaxrl train` runs, with its CPU
defaults) at the default checkpoint interval and reads the checkpoint records of
`timings.jsonl`. The cases: PPO CartPole (`ppo_cartpole_reference.yaml`), DQN CartPole with
its replay buffers in the checkpoint (`dqn_cartpole.yaml`), and the same DQN with
`checkpoint.replay_buffer=false`. Writes `<out>/checkpoint_overhead.md` and `.json`.

    python benchmarks/checkpoint_overhead.py --seeds 256 --ppo-steps 200000 --dqn-steps 100000
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

CASES = {  # label -> (config file, extra overrides, which --*-steps budget applies)
    "PPO": ("ppo_cartpole_reference.yaml", [], "ppo"),
    "DQN, buffers saved": ("dqn_cartpole.yaml", ["checkpoint.replay_buffer=true"], "dqn"),
    "DQN, buffers left out": ("dqn_cartpole.yaml", ["checkpoint.replay_buffer=false"], "dqn"),
}


def folder_bytes(path: Path) -> int:
    """Total size of the files below `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(config_file: str, overrides: list[str]) -> dict:
    """Train one case in a temporary run folder; its save times, checkpoint size and share."""
    from jaxrl import config as config_lib
    from jaxrl.experiment.train import train

    config = config_lib.load(ROOT / "configs" / config_file, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        summary = train(config, run_dir, progress=False)
        records = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
        saves = [r["seconds"] for r in records if r["event"] == "checkpoint"]
        chunks = sum(r["seconds"] for r in records if r["event"] == "chunk")
        sizes = [folder_bytes(p) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    return {
        "config": config_file, "overrides": overrides, "seeds": config.seeds,
        "env_steps_per_seed": summary["total_env_steps_per_seed"],
        "checkpoint_every_env_steps": config.checkpoint.every_env_steps, "saves": len(saves),
        "save_seconds_each": saves, "checkpoint_mib": round(max(sizes) / 2**20, 2),
        "training_seconds": round(chunks, 2), "wall_seconds": round(summary["wall_seconds"], 2),
        "share_of_training_time": round(sum(saves) / (chunks + sum(saves)), 4),
        "versions": summary["versions"],
    }


def table(results: dict[str, dict], machine: str) -> str:
    """The markdown report: one row per case."""
    versions = next(iter(results.values()))["versions"]
    lines = [
        "# Checkpoint overhead: CartPole-v1, PPO and DQN\n",
        f"- machine: {machine}; jax {versions['jax']}, {versions['device_count']} CPU devices",
        "- interval: the default `checkpoint.every_env_steps` (per seed); a save is also made at the end\n",
        "| case | config | seeds | env steps / seed | interval | saves | seconds per save "
        "| checkpoint MiB | share of training time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | `{r['config']}` | {r['seeds']} | {r['env_steps_per_seed']:,} | "
            f"{r['checkpoint_every_env_steps']:,} | {r['saves']} | "
            f"{', '.join(f'{s:.2f}' for s in r['save_seconds_each'])} | {r['checkpoint_mib']} | "
            f"{100 * r['share_of_training_time']:.2f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--ppo-steps", type=int, default=200_000, help="PPO env steps per seed")
    parser.add_argument("--dqn-steps", type=int, default=100_000, help="DQN env steps per seed")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-2core"))
    args = parser.parse_args(argv)

    from jaxrl.runtime import cpu_defaults

    cpu_defaults()
    os.environ["JAXRL_COMPILATION_CACHE"] = ""
    budgets = {"ppo": args.ppo_steps, "dqn": args.dqn_steps}
    results = {}
    for label in args.cases:
        config_file, overrides, budget = CASES[label]
        results[label] = measure(config_file, [f"seeds={args.seeds}",
                                               f"total_env_steps={budgets[budget]}", *overrides])
        print(f"{label}: {results[label]['save_seconds_each']} s per save, "
              f"{results[label]['checkpoint_mib']} MiB", flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint_overhead.json").write_text(
        json.dumps({"machine": machine, "cases": results}, indent=2) + "\n")
    report = table(results, machine)
    (out / "checkpoint_overhead.md").write_text(report)
    print(report)


if __name__ == "__main__":
    sys.exit(main())
