"""Small fixed-seed training runs whose per-seed outputs are saved once and compared later.

`python tests/golden_runs.py OUT.json` trains every scenario below through `jaxrl.experiment
.train.train` (the code `jaxrl train` runs) and writes each run's per-seed numbers: the final
greedy evaluation and every metrics.csv column that does not measure time. The file in
tests/data/ was written by the code before the algorithms were rewritten as module-level
functions (commit 70829f4), so `test_golden.py` shows that the rewrite left the math unchanged.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

TINY_RUN = ["seeds=2", "log_every_env_steps=64", "eval.episodes=2", "eval.every_env_steps=0",
            "checkpoint.every_env_steps=0"]
HOST = ["env.backend=gymnasium", "env.num_workers=1"]
PPO = ["env.num_envs=4", "algo.num_steps=16", "algo.num_minibatches=2", "total_env_steps=256"]
GRPO = ["env.num_envs=2", "algo.group_size=2", "algo.horizon=16", "algo.num_minibatches=2",
        "total_env_steps=256"]
DQN = ["env.num_envs=4", "algo.buffer_size=256", "algo.batch_size=16", "algo.learning_starts=32",
       "algo.replay_ratio=0.25", "algo.target_update_every=16", "total_env_steps=256"]

SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "ppo_categorical": ("ppo_cartpole", PPO),
    "ppo_gaussian": ("ppo_pendulum", PPO),
    "ppo_beta": ("ppo_beta_pendulum", PPO),
    "ppo_data_parallel": ("ppo_cartpole", PPO + ["combine.strategy=data_parallel"]),
    "grpo": ("grpo_cartpole", GRPO),
    "dqn": ("dqn_cartpole", DQN),
    "rainbow": ("rainbow_cartpole", DQN),
    "ppo_host": ("ppo_cartpole", PPO + HOST),
    "grpo_host": ("grpo_cartpole", GRPO + HOST),
    "rainbow_host": ("rainbow_cartpole", DQN + HOST),
}
TIME_COLUMNS = ("sps", "seconds", "time", "wall")


def per_seed_numbers(run_dir: Path, summary: dict) -> dict[str, list]:
    """The final evaluation and the time-free metrics.csv columns, row by row."""
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if not any(t in c for t in TIME_COLUMNS)]
    return {"final_eval": summary["final_eval"]["per_seed"],
            "metrics": {c: [row[c] for row in rows] for c in columns}}


def run(name: str) -> dict[str, list]:
    from jaxrl import config as config_lib
    from jaxrl.experiment.train import train

    stem, overrides = SCENARIOS[name]
    config = config_lib.load(CONFIGS / f"{stem}.yaml", TINY_RUN + overrides)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        summary = train(config, run_dir, progress=False)
        return per_seed_numbers(run_dir, summary)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps({name: run(name) for name in SCENARIOS}, indent=1))
