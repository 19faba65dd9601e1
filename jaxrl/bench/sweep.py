"""The `sweep` suite: wall time of one Optuna sweep three ways, each a fresh `jaxrl` process
(or several) from an empty compilation cache of its own, timed from start to exit:

- batched: `jaxrl sweep --trials T --batch B` (the trials trained together as populations);
- one by one: `jaxrl sweep --trials T --batch 1` (one trial at a time in one process);
- processes: one `jaxrl train trial.yaml` process per trial (a training script driven by Optuna).

The workload is PPO on CartPole-v1 (`configs/ppo_cartpole.yaml`) with a seeded random search
over four vmappable hyperparameters, so every mode trains the same trials (the random
sampler's draws do not depend on the batch size); the processes mode trains the values the
batched sweep drew. Imports, compiles, evaluation and plots all count.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jaxrl.bench import common

TARGET = 8.0  # issue #8: a 64-trial sweep batched by 16 against the same trials one at a time
SPACE = {"algo.lr": {"type": "log_uniform", "low": 3.0e-4, "high": 1.0e-2},
         "algo.gae_lambda": {"type": "uniform", "low": 0.8, "high": 0.99},
         "algo.clip_eps": {"type": "uniform", "low": 0.1, "high": 0.3},
         "algo.ent_coef": {"type": "uniform", "low": 0.0, "high": 0.02}}


class Mode(NamedTuple):
    """One way of running the sweep's trials."""

    name: str
    title: str


ROWS = (Mode("batched", "batched"), Mode("one-by-one", "one by one"), Mode("processes", "one process per trial"))


class Plan(NamedTuple):
    """A budget: trials, trials per population, seeds per trial, env steps per seed."""

    trials: int
    batch: int
    seeds: int
    steps: int
    eval_episodes: int = 10


PLANS = {"tiny": Plan(2, 2, 1, 2_048, 2), "quick": Plan(16, 8, 2, 20_480), "full": Plan(64, 16, 2, 50_000)}


def jaxrl_command(*args: str) -> list[str]:
    """The `jaxrl` CLI in a fresh interpreter (this one's)."""
    return [sys.executable, "-m", "jaxrl", *args]


def run_cli(args: Sequence[str], cache: Path, timeout: float, record: dict[str, Any]) -> bool:
    """One `jaxrl` command with its own compilation cache folder and `jaxrl train`'s CPU
    defaults; `record` gains its wall seconds (or why it failed). True when it succeeded."""
    command = jaxrl_command(*args, "--no-progress", "--compilation-cache", str(cache))
    return common.run_command(command, common.jaxrl_worker_env(compilation_cache=True), timeout, record) is not None


def search_config(config_dir: Path, plan: Plan) -> dict[str, Any]:
    """`configs/ppo_cartpole.yaml` at the plan's budget, evaluated at the end only, with the search."""
    import yaml

    data = yaml.safe_load((config_dir / "ppo_cartpole.yaml").read_text())
    data.update(total_env_steps=plan.steps, seeds=plan.seeds, log_every_env_steps=max(plan.steps // 4, 512),
                eval={"episodes": plan.eval_episodes, "every_env_steps": 0}, checkpoint={"every_env_steps": 0})
    data["search"] = {"space": SPACE, "sampler": "random", "objective": "final_iqm"}
    return data


def trial_values(run_dir: Path) -> list[dict[str, float]]:
    """Each trial's searched values, in trial order, from a sweep's trials.csv."""
    with (run_dir / "trials.csv").open() as handle:
        return [{key: float(row[key]) for key in SPACE} for row in csv.DictReader(handle)]


def trial_config(search: dict[str, Any], values: dict[str, float]) -> dict[str, Any]:
    """The search config without its search, with one trial's values set."""
    data = json.loads(json.dumps({k: v for k, v in search.items() if k != "search"}))
    for key, value in values.items():
        section, name = key.split(".")
        data[section][name] = value
    return data


def measure_processes(search: dict[str, Any], values: list[dict[str, float]], work: Path, timeout: float,
                      record: dict[str, Any]) -> dict[str, Any]:
    """Every trial as its own `jaxrl train` process, one after another, sharing one cache folder."""
    import yaml

    seconds = 0.0
    for index, trial in enumerate(values):
        path = work / f"trial-{index}.yaml"
        path.write_text(yaml.safe_dump(trial_config(search, trial)))
        if not run_cli(["train", str(path), "--run-dir", str(work / f"train-{index}")], work / "cache-processes",
                       timeout, record):
            return record
        seconds += record["process_seconds"]
    return record | {"seconds": seconds, "processes": len(values)}


def measure_repeat(modes: Sequence[str], plan: Plan, config_dir: Path, repeat: int, timeout: float
                   ) -> list[dict[str, Any]]:
    """The modes back to back in a fresh folder; a record per mode."""
    import yaml

    search = search_config(config_dir, plan)
    records = []
    with tempfile.TemporaryDirectory(prefix="jaxrl-bench-sweep-") as folder:
        work = Path(folder)
        (work / "search.yaml").write_text(yaml.safe_dump(search))
        for mode in modes:
            record: dict[str, Any] = {"mode": mode, "repeat": repeat}
            common.progress(f"{mode} ({repeat + 1})")
            if mode == "processes":
                sweeps = [work / name for name in ("batched", "one-by-one") if (work / name / "trials.csv").is_file()]
                record = measure_processes(search, trial_values(sweeps[0]), work, timeout, record)
            else:
                batch = plan.batch if mode == "batched" else 1
                if run_cli(["sweep", str(work / "search.yaml"), "--trials", str(plan.trials), "--batch", str(batch),
                            "--run-dir", str(work / mode)], work / f"cache-{mode}", timeout, record):
                    summary = json.loads((work / mode / "summary.json").read_text())
                    record |= {"seconds": record["process_seconds"], "values": trial_values(work / mode),
                               "best": summary["best_trials"][0] if summary["best_trials"] else None}
            records.append(record)
    return records


def mode_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode measured: wall seconds (median, range) and the ratio to the batched sweep,
    paired within a repeat (the modes of one repeat ran back to back)."""
    batched = [run for run in runs if run["mode"] == "batched"]
    rows = []
    for mode in ROWS:
        mine = [run for run in runs if run["mode"] == mode.name]
        if mine:
            ok = [run["seconds"] for run in mine if run.get("status") == "ok"]
            rows.append({"mode": mode.name, "runs": mine, "seconds": common.summary(ok),
                         "ratio": common.summary(common.paired_ratios(mine, batched, "seconds"))})
    return rows


def what_runs(mode: str, plan: Plan) -> str:
    """The command a mode runs, in words."""
    return {"batched": f"`jaxrl sweep --trials {plan.trials} --batch {plan.batch}`: {-(-plan.trials // plan.batch)} "
                       f"population(s) of {plan.batch * plan.seeds} members",
            "one-by-one": f"`jaxrl sweep --trials {plan.trials} --batch 1`: {plan.trials} runs of {plan.seeds} "
                          "member(s) in one process",
            "processes": f"{plan.trials} × `jaxrl train trial.yaml`, one process per trial"}[mode]


def row_cells(row: dict[str, Any], plan: Plan) -> str:
    """One Markdown table line."""
    title = next(mode.title for mode in ROWS if mode.name == row["mode"])
    seconds, ratio = row["seconds"], row["ratio"]
    if seconds is None:
        failed = next(run for run in row["runs"] if run.get("status") != "ok")
        return f"| {title} | {what_runs(row['mode'], plan)} | – | not measured: {str(failed.get('error'))[:160]} |"
    cell = "–" if ratio is None or row["mode"] == "batched" else \
        common.fmt_range(ratio["median"], ratio["min"], ratio["max"], 1, "×")
    return (f"| {title} | {what_runs(row['mode'], plan)} "
            f"| {common.fmt_range(seconds['median'], seconds['min'], seconds['max'], 1)} | {cell} |")


def same_trials(runs: Sequence[dict[str, Any]]) -> bool | None:
    """Whether the two sweeps of each repeat drew the same trials (None if not both ran)."""
    verdicts = []
    for repeat in {run["repeat"] for run in runs}:
        values = [run["values"] for run in runs if run["repeat"] == repeat and "values" in run]
        if len(values) == 2:
            verdicts.append(values[0] == values[1])
    return all(verdicts) if verdicts else None


def render(machine: dict[str, Any], budget: common.Budget, plan: Plan, runs: Sequence[dict[str, Any]]) -> str:
    """The suite's Markdown report."""
    rows = mode_rows(runs)
    lines = common.header("Sweep wall time: trials batched into populations vs one at a time", machine, budget, [
        f"workload: PPO CartPole-v1 (`configs/ppo_cartpole.yaml`'s network and rollout), {plan.trials} trials of a "
        f"seeded random search over {', '.join(SPACE)}; {plan.seeds} seed(s) per trial, {plan.steps:,} env steps per "
        f"seed, a final greedy evaluation of {plan.eval_episodes} episodes",
        "each mode from an empty compilation cache of its own, timed from process start to exit; the modes of a "
        "repeat run back to back; medians [min–max] over repeats, ratios paired within a repeat",
        f"the two sweeps drew the same trials: {same_trials(runs)}",
    ], timed=False)
    lines += ["| mode | what runs | wall s | batched is faster by |", "|---|---|---|---|"]
    lines += [row_cells(row, plan) for row in rows]
    best = [f"{run['mode']}: trial {run['best']['trial']} ({run['best']['value']:.1f})" for run in runs
            if run["repeat"] == 0 and run.get("best")]
    if best:
        lines += ["", "Best trial found (first repeat): " + "; ".join(best) + "."]
    met = [f"against {row['mode'].replace('-', ' ')}: {row['ratio']['median']:.1f}× "
           f"({'met' if row['ratio']['median'] >= TARGET else 'not met'})"
           for row in rows if row["mode"] != "batched" and row["ratio"]]
    if met:
        lines += ["", f"Target (issue #8): batched ≥ {TARGET:g}× faster than the same trials one at a time; "
                  + "; ".join(met) + "."]
    return "\n".join(lines) + "\n"


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None) -> list[Path]:
    """Runs the modes (or `only` those; the processes mode needs a sweep's trials, so it brings
    the batched sweep along) once per repeat, rewriting `sweep.md/.json` after each repeat."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    plan = PLANS[budget.name]
    modes = [mode.name for mode in ROWS if not only or mode.name in only]
    if modes == ["processes"]:
        modes.insert(0, "batched")
    runs: list[dict[str, Any]] = []
    written: list[Path] = []
    missing = common.missing_extra("optuna")
    for repeat in range(budget.repeats):
        if missing:
            runs += [{"mode": mode, "repeat": repeat, "status": "unavailable", "error": missing} for mode in modes]
        else:
            runs += measure_repeat(modes, plan, config_dir, repeat, timeout)
        written = common.write_report(out_dir, "sweep", render(machine, budget, plan, runs),
                                      {"machine": machine, "budget": budget._asdict(), "plan": plan._asdict(),
                                       "runs": runs})
    print(render(machine, budget, plan, runs))
    return written
