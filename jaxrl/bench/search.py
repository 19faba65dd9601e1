"""The `search` suite: does a batched Optuna sweep find a setting at least as good as the
shipped config?

Each row runs `jaxrl sweep SEARCH_CONFIG --trials T --batch B`, then trains the sweep's
`best_config.yaml` and the shipped config again, each with `jaxrl train` on fresh seeds (base
seed 1000, so the sweep's own selection noise does not count) at the search config's budget,
and reports each one's final greedy IQM with its 95% CI and the mean greedy return over the
evaluations during training (the `eval_auc` objective), where the config evaluates during training.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jaxrl.bench import common
from jaxrl.bench.sweep import run_cli

CONFIRM_SEED = 1000


class Search(NamedTuple):
    """A search config and the shipped config it is held against."""

    name: str
    title: str
    search_config: str
    shipped_config: str
    confirm_seeds: int


ROWS = (
    Search("ppo-cartpole", "PPO CartPole-v1", "ppo_cartpole_search.yaml", "ppo_cartpole.yaml", 16),
    Search("ppo-minatar-breakout", "PPO MinAtar Breakout", "ppo_minatar_breakout_search.yaml",
           "ppo_minatar_breakout.yaml", 8),
)


class Plan(NamedTuple):
    """A budget: trials, trials per population, confirmation seeds (None: the row's), overrides
    of the search config (and so of the confirmation runs), and the rows run by default."""

    trials: int
    batch: int
    confirm_seeds: int | None
    overrides: tuple[str, ...]
    rows: tuple[str, ...]


PLANS = {
    "tiny": Plan(2, 2, 2, ("seeds=1", "total_env_steps=4096", "log_every_env_steps=1024",
                           "eval.every_env_steps=2048", "eval.episodes=2"), ("ppo-cartpole",)),
    "quick": Plan(16, 8, 4, (), ("ppo-cartpole",)),
    "full": Plan(64, 16, None, (), tuple(row.name for row in ROWS)),
}


def eval_auc(run_dir: Path) -> float | None:
    """Mean over evaluation points of the mean greedy return across seeds (None without
    evaluations during training): the sweep's `eval_auc` objective."""
    from jaxrl.experiment.tune import eval_curve

    curve = eval_curve(run_dir, "")
    return float(curve.mean()) if len(curve) > 1 else None


def confirm_overrides(search_path: Path, plan: Plan, seeds: int) -> list[str]:
    """The confirmation runs' overrides: the search budget and evaluation points, fresh seeds."""
    from jaxrl.config import load

    search = load(search_path, list(plan.overrides))
    kept = [o for o in plan.overrides if not o.startswith("seeds=")]
    return [*kept, f"total_env_steps={search.total_env_steps}", f"seeds={seeds}", f"seed={CONFIRM_SEED}",
            f"log_every_env_steps={search.log_every_env_steps}", f"eval.every_env_steps={search.eval.every_env_steps}",
            "checkpoint.every_env_steps=0"]


def train_again(config: Path, run_dir: Path, overrides: Sequence[str], cache: Path, timeout: float
                ) -> dict[str, Any]:
    """One confirmation run (`jaxrl train`): its final greedy evaluation, the mean greedy return
    over evaluations during training and its wall seconds, or status and error."""
    done: dict[str, Any] = {}
    if not run_cli(["train", str(config), "--run-dir", str(run_dir), *overrides], cache, timeout, done):
        return done
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"status": "ok", "final": summary["final_eval"], "eval_auc": eval_auc(run_dir),
            "seconds": done["process_seconds"], "env_steps_per_seed": summary["total_env_steps_per_seed"]}


def keep_sweep_files(row: Search, sweep_dir: Path, out_dir: Path) -> list[str]:
    """Copies the sweep's best config and plots into `out_dir` as `search_<shipped config>_*`."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    stem, kept = Path(row.shipped_config).stem, []
    for source, suffix in (("best_config.yaml", "best_config.yaml"), ("plots/optimization_history.png", "history.png"),
                           ("plots/param_importances.png", "importances.png")):
        if (sweep_dir / source).is_file():
            kept.append(f"search_{stem}_{suffix}")
            shutil.copyfile(sweep_dir / source, out_dir / kept[-1])
    return kept


def measure(row: Search, config_dir: Path, plan: Plan, timeout: float, out_dir: Path) -> dict[str, Any]:
    """The sweep and the two confirmation runs in a fresh folder; what each found (the sweep's
    best config and plots are kept in `out_dir`)."""
    record: dict[str, Any] = {"row": row.name}
    with tempfile.TemporaryDirectory(prefix="jaxrl-bench-search-") as folder:
        work, search_path = Path(folder), config_dir / row.search_config
        sweep: dict[str, Any] = {}
        if not run_cli(["sweep", str(search_path), "--trials", str(plan.trials), "--batch", str(plan.batch),
                        "--run-dir", str(work / "sweep"), *plan.overrides], work / "cache", timeout, sweep):
            return record | {"status": sweep["status"], "error": "sweep: " + sweep["error"]}
        summary = json.loads((work / "sweep" / "summary.json").read_text())
        record["sweep"] = {"seconds": sweep["process_seconds"], **{k: summary[k] for k in ("trials", "objective")},
                           "best": summary["best_trials"][0] if summary["best_trials"] else None,
                           "kept": keep_sweep_files(row, work / "sweep", out_dir)}
        seeds = plan.confirm_seeds or row.confirm_seeds
        overrides = confirm_overrides(search_path, plan, seeds)
        record |= {"confirm_overrides": overrides, "confirm_seeds": seeds, "confirm": {}}
        for label, config in (("shipped", config_dir / row.shipped_config),
                              ("best trial", work / "sweep" / "best_config.yaml")):
            common.progress(f"{row.name}: training the {label} config again on fresh seeds")
            done = train_again(config, work / label.replace(" ", "-"), overrides, work / "cache", timeout)
            if done["status"] != "ok":
                return record | {"status": done["status"], "error": f"{label}: " + done["error"]}
            record["confirm"][label] = done
    return record | {"status": "ok"}


def values_text(values: dict[str, Any]) -> str:
    """`key=value, ...` with floats at four significant digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def render(machine: dict[str, Any], budget: common.Budget, plan: Plan, results: Sequence[tuple[Search, dict]]) -> str:
    """The suite's Markdown report: the confirmation table, then each sweep."""
    lines = common.header("Search: a batched Optuna sweep's best trial against the shipped config", machine, budget, [
        f"sweep: `jaxrl sweep SEARCH_CONFIG --trials {plan.trials} --batch {plan.batch}`"
        + (f" with `{' '.join(plan.overrides)}`" if plan.overrides else ""),
        f"confirmation: the shipped config and the sweep's `best_config.yaml`, each trained again by `jaxrl train` "
        f"on fresh seeds (base seed {CONFIRM_SEED}) at the search config's budget; final greedy evaluation, IQM "
        "with a 95% bootstrap CI; the last column is the mean greedy return over evaluations during training",
    ], timed=False)
    lines += ["| search | config | seeds | env steps / seed | final IQM [95% CI] | mean | min "
              "| mean greedy return over evaluations | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for row, result in results:
        if result.get("status") != "ok":
            why = f"not measured: {str(result.get('error'))[:160]}"
            lines.append(f"| {row.title} | – | – | – | {why} | – | – | – | – |")
            continue
        for label, done in result["confirm"].items():
            f = done["final"]
            lines.append(f"| {row.title} | {label} | {result['confirm_seeds']} | {done['env_steps_per_seed']:,} "
                         f"| {f['iqm']:.1f} [{f['iqm_ci_low']:.1f}, {f['iqm_ci_high']:.1f}] | {f['mean']:.1f} "
                         f"| {f['min']:.1f} | {common.fmt(done['eval_auc'], 1)} | {done['seconds']:.0f} |")
    lines += ["", "| search | search config | trials complete / pruned / failed | objective | sweep wall s "
              "| best trial |", "|---|---|---|---|---|---|"]
    for row, result in results:
        if "sweep" in result:
            sweep, best = result["sweep"], result["sweep"]["best"]
            counts = "{complete} / {pruned} / {fail}".format(**sweep["trials"])
            best_text = f"{best['trial']}: {values_text(best['values'])}" if best else "–"
            lines.append(f"| {row.title} | `{row.search_config}` | {counts} | {sweep['objective']} "
                         f"| {sweep['seconds']:.0f} | {best_text} |")
    return "\n".join(lines) + "\n"


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None) -> list[Path]:
    """Runs every search row of the budget (or `only` those), rewriting `search.md/.json` after
    each, and prints the report (one run per row: `--repeats` does not apply)."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    plan = PLANS[budget.name]
    missing = common.missing_extra("optuna")
    results: list[tuple[Search, dict[str, Any]]] = []
    written: list[Path] = []
    for row in (r for r in ROWS if r.name in (only or plan.rows)):
        common.progress(f"{row.name}: sweeping {row.search_config} ({plan.trials} trials, batch {plan.batch})")
        result = {"row": row.name, "status": "unavailable", "error": missing} if missing else \
            measure(row, config_dir, plan, timeout, out_dir)
        results.append((row, result))
        written = common.write_report(out_dir, "search", render(machine, budget, plan, results),
                                      {"machine": machine, "budget": budget._asdict(), "plan": plan._asdict(),
                                       "rows": [result for _, result in results]})
    print(render(machine, budget, plan, results))
    return written + [out_dir / name for _, result in results for name in result.get("sweep", {}).get("kept", ())]
