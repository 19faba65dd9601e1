"""Does a batched Optuna sweep find a setting at least as good as the shipped config?

Runs (or reuses) `jaxrl sweep SEARCH_CONFIG --trials T --batch B`, then trains the sweep's
`best_config.yaml` and the shipped config side by side with fresh seeds (`--confirm-seeds`,
the seeds after the sweep's own so the comparison is not the sweep's selection noise) at the
search config's budget, and writes a Markdown table with each one's final greedy IQM and
95% CI (and the mean greedy return over evaluations, when the configs evaluate during
training) to `<out>/search_quality_<name>.md`.

    python benchmarks/search_quality.py configs/ppo_cartpole_search.yaml configs/ppo_cartpole.yaml
    python benchmarks/search_quality.py configs/ppo_minatar_breakout_search.yaml \\
        configs/ppo_minatar_breakout.yaml --sweep-dir runs/minatar_sweep   # reuse a finished sweep
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ppo_throughput import machine_info  # noqa: E402
from sweep_throughput import jaxrl_command  # noqa: E402

from jaxrl.experiment.tune import eval_curve  # noqa: E402

REPO = HERE.parent


def jaxrl(*args: str) -> float:
    """Runs the CLI; returns its wall seconds (raises with its stderr on failure)."""
    start = time.perf_counter()
    done = subprocess.run(jaxrl_command(*args), capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"jaxrl {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def eval_auc(run_dir: Path) -> float | None:
    """Mean over evaluation points of the mean greedy return across seeds (None without
    evaluations during training): the sweep's `eval_auc` objective."""
    curve = eval_curve(run_dir, "")
    return float(curve.mean()) if len(curve) > 1 else None


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    search = yaml.safe_load(args.search_config.read_text())
    sweep_dir = args.sweep_dir or work / "sweep"
    sweep_seconds = None
    if not (sweep_dir / "summary.json").exists() or args.sweep_dir is None:
        sweep_seconds = jaxrl("sweep", str(args.search_config), "--trials", str(args.trials), "--batch",
                              str(args.batch), "--run-dir", str(sweep_dir), "--no-progress")
    summary = json.loads((sweep_dir / "summary.json").read_text())
    budget = [f"total_env_steps={search['total_env_steps']}", f"seeds={args.confirm_seeds}",
              f"seed={args.confirm_seed}", "checkpoint.every_env_steps=0"]
    eval_points = [f"eval.every_env_steps={search.get('eval', {}).get('every_env_steps', 0)}",
                   f"log_every_env_steps={search['log_every_env_steps']}"]
    rows = {}
    for label, config in (("shipped", args.shipped_config), ("best trial", sweep_dir / "best_config.yaml")):
        run_dir = work / label.replace(" ", "_")
        seconds = jaxrl("train", str(config), "--run-dir", str(run_dir), "--no-progress", *budget, *eval_points)
        final = json.loads((run_dir / "summary.json").read_text())["final_eval"]
        rows[label] = {"final": final, "eval_auc": eval_auc(run_dir), "seconds": seconds}
        print(f"{label}: IQM {final['iqm']:.1f} [{final['iqm_ci_low']:.1f}, {final['iqm_ci_high']:.1f}]", flush=True)
    return {"sweep": {k: summary[k] for k in ("trials", "objective", "best_trials")}, "sweep_seconds": sweep_seconds,
            "rows": rows, "budget": budget}


def render(machine: dict[str, Any], args: argparse.Namespace, result: dict[str, Any]) -> str:
    sweep = result["sweep"]
    best = sweep["best_trials"][0]
    lines = [
        f"# Batched Optuna sweep vs shipped config: {args.shipped_config.name}",
        "",
        f"Machine: {machine['cpu_model']} ({machine['cpu_count']} cores), "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + f"; {machine['date']}.",
        "",
        f"Sweep: `jaxrl sweep {args.search_config.relative_to(REPO) if args.search_config.is_absolute() else args.search_config} "
        f"--trials {args.trials} --batch {args.batch}`: {sweep['trials']['complete']} complete, "
        f"{sweep['trials']['pruned']} pruned, {sweep['trials']['fail']} failed; objective {sweep['objective']}; "
        + (f"wall {result['sweep_seconds'] / 60:.1f} min. " if result["sweep_seconds"] else "")
        + f"Best trial {best['trial']}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                      for k, v in best["values"].items()) + ".",
        "",
        f"Confirmation: both configs trained again with {args.confirm_seeds} fresh seeds (base seed "
        f"{args.confirm_seed}) at the search budget ({', '.join(result['budget'][:1])}); final greedy evaluation.",
        "",
        "| config | final IQM [95% CI] | mean | min | mean greedy return over evaluations | wall (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, row in result["rows"].items():
        f = row["final"]
        auc = "" if row["eval_auc"] is None else f"{row['eval_auc']:.1f}"
        lines.append(f"| {label} | {f['iqm']:.1f} [{f['iqm_ci_low']:.1f}, {f['iqm_ci_high']:.1f}] | {f['mean']:.1f} | "
                     f"{f['min']:.1f} | {auc} | {row['seconds']:.0f} |")
    return "\n".join(lines + [""])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("search_config", type=Path)
    parser.add_argument("shipped_config", type=Path)
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sweep-dir", type=Path, help="a finished sweep to reuse instead of running one")
    parser.add_argument("--confirm-seeds", type=int, default=16)
    parser.add_argument("--confirm-seed", type=int, default=1000, help="base seed of the confirmation runs")
    parser.add_argument("--work", type=Path, help="where to keep the runs (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cpu-2core")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import tempfile

    args = parse_args(argv)
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="jaxrl-search-quality-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args, work)
    name = args.shipped_config.stem
    args.out.mkdir(parents=True, exist_ok=True)
    text = render(machine, args, result)
    (args.out / f"search_quality_{name}.md").write_text(text)
    (args.out / f"search_quality_{name}.json").write_text(json.dumps({"machine": machine, **result}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
