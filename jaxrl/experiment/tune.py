"""`jaxrl sweep`: Optuna trials asked K at a time and trained together as one population.

Each batch of K trials becomes one program per combination of the static values they drew
(keys outside the algorithm's vmappable `HParams`, e.g. network sizes); inside a program the
trials are `sweep.settings:` of an ordinary run (trial x seeds members, one compiled program),
written to `RUN_DIR/batches/<batch>/<program>/` as a complete run folder. At every chunk each
live trial reports the IQM over its seeds of the training return to Optuna, so a pruner can
stop it; a program whose trials are all pruned ends there, and pruned trials' slots go to new
trials in the next batch (a vmapped member costs the same whether its trial lives or not).
At the end each trial is told its objective (final greedy IQM over its seeds by default).
The study lives in `RUN_DIR/study.db` (SQLite): running the same command again continues an
interrupted sweep — finished trials are never re-run and an interrupted batch resumes from
its checkpoints. Output: `trials.csv`, `summary.json` (best trials), `best_config.yaml`
(ready for `jaxrl train`), and `plots/optimization_history.png`, `plots/param_importances.png`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxrl import config as config_lib
from jaxrl import sweep as sweep_lib
from jaxrl.analysis import aggregate, iqm
from jaxrl.config import Config, dump
from jaxrl.errors import ConfigError, RunDirError
from jaxrl.experiment.run_dir import RunLock, create_run_dir, environment_versions, read_metrics, write_json
from jaxrl.runtime import raise_if_interrupted

STUDY_NAME = "jaxrl-sweep"
MARKER = "sweep.json"  # what makes a folder a sweep folder (and records how it was started)


def require_optuna() -> Any:
    """Optuna, or a one-line error naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("jaxrl sweep needs Optuna: pip install 'jaxrl[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --- the study --------------------------------------------------------------------------------

def distributions(space: Sequence[sweep_lib.SearchParam]) -> dict[str, Any]:
    """Optuna distributions for the space; categorical choices that are not plain scalars
    (lists, mappings) are offered by their position and mapped back by `config_values`."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for p in space:
        if p.kind == "categorical":
            out[p.key] = CategoricalDistribution(p.choices if _plain(p.choices) else tuple(range(len(p.choices))))
        elif p.kind == "int":
            out[p.key] = IntDistribution(p.low, p.high, log=p.log, step=p.step or 1)
        else:
            out[p.key] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def config_values(space: Sequence[sweep_lib.SearchParam], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Optuna params as config values (positions back to their choices)."""
    return {p.key: p.choices[params[p.key]] if p.kind == "categorical" and not _plain(p.choices)
            else params[p.key] for p in space}


def _plain(choices: tuple) -> bool:
    """Whether Optuna can store the choices themselves (None, bools, numbers, text)."""
    return all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)


def make_sampler(optuna: Any, name: str, seed: int, batch: int) -> Any:
    """The sampler `search.sampler` names. TPE lies about pending trials (constant liar) so
    the K trials of one batch spread out instead of crowding one guess."""
    samplers = optuna.samplers
    if name == "tpe":
        return samplers.TPESampler(seed=seed, constant_liar=batch > 1)
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    import importlib.util

    if importlib.util.find_spec("cmaes") is None:  # CmaEsSampler needs it
        raise ConfigError("search.sampler: cmaes needs the cmaes package: pip install cmaes")
    return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def make_pruner(optuna: Any, search: Any, chunk_env_steps: int, total_env_steps: int) -> Any:
    """The pruner `search.pruner` names; steps are env steps per member."""
    pruners = optuna.pruners
    warmup = search.pruner_warmup_env_steps
    if search.pruner == "median":
        return pruners.MedianPruner(search.pruner_startup_trials, warmup)
    if search.pruner == "percentile":
        return pruners.PercentilePruner(25.0, search.pruner_startup_trials, warmup)
    if search.pruner == "successive_halving":
        return pruners.SuccessiveHalvingPruner(min_resource=max(warmup, chunk_env_steps))
    if search.pruner == "hyperband":
        return pruners.HyperbandPruner(min_resource=max(warmup, chunk_env_steps), max_resource=total_env_steps)
    return pruners.NopPruner()


# --- one batch --------------------------------------------------------------------------------

class Program(NamedTuple):
    """The trials of a batch that share static values: one compiled program, one run folder."""

    folder: str
    static: dict[str, Any]
    trials: list[int]


def group_programs(trial_values: dict[int, dict[str, Any]], static_keys: set[str]) -> list[Program]:
    """Trials grouped by the static values they drew, in order of first appearance."""
    groups: dict[str, Program] = {}
    for number, values in trial_values.items():
        static = {k: v for k, v in values.items() if k in static_keys}
        name = sweep_lib.folder_name(sweep_lib.grid({k: [v] for k, v in static.items()})[0])
        groups.setdefault(name, Program(name, static, []))[2].append(number)
    return list(groups.values())


def trial_name(number: int) -> str:
    return f"trial-{number}"


def program_config(base: dict, program: Program, trial_values: dict[int, dict[str, Any]],
                   static_keys: set[str]) -> Config:
    """The run config of one program: the base with its static values fixed and its trials
    as `sweep.settings:` (no `search:` left)."""
    settings = [{"name": trial_name(n), **{k: v for k, v in trial_values[n].items() if k not in static_keys}}
                for n in program.trials]
    data = sweep_lib.with_values({k: v for k, v in base.items() if k not in ("search", "sweep")}, program.static)
    return config_lib.from_dict({**data, "sweep": {sweep_lib.SETTINGS: settings}})


def objective(name: str, per_seed: np.ndarray, eval_curve: np.ndarray) -> float:
    """A trial's value from its seeds' final greedy returns (and, for eval_auc, the mean
    return over seeds at every evaluation, final included)."""
    if name == "final_iqm":
        return iqm(per_seed)
    if name == "final_mean":
        return float(np.mean(per_seed))
    if name == "final_median":
        return float(np.median(per_seed))
    if name == "final_min":
        return float(np.min(per_seed))
    return float(np.mean(eval_curve))


def eval_curve(run_dir: Path, setting: str) -> np.ndarray:
    """Mean eval return over a setting's seeds at each evaluated point of a run folder."""
    by_step: dict[int, list[float]] = {}
    for row in read_metrics(run_dir / "metrics.csv"):
        if row.get("setting", "") == setting and row.get("eval_return") not in (None, "", "nan"):
            by_step.setdefault(int(row["env_steps"]), []).append(float(row["eval_return"]))
    return np.array([np.mean(v) for _, v in sorted(by_step.items())])


def intermediate_value(report: Any, members: np.ndarray) -> float | None:
    """What a trial reports at a chunk: the IQM over its seeds of the chunk's training return
    (None while none of its seeds has finished an episode)."""
    returns = report.metrics.get("episode_return")
    if returns is None:
        return None
    values = np.asarray(returns)[members]
    values = values[~np.isnan(values)]
    return iqm(values) if values.size else None


# --- the sweep ----------------------------------------------------------------------------------

class SweepState(NamedTuple):
    """What a sweep holds while it runs."""

    optuna: Any
    study: Any
    config: Config
    base: dict  # the config as plain data
    space: list[sweep_lib.SearchParam]
    static_keys: set[str]
    run_dir: Path
    programs: dict[str, dict]  # per static setting: compiled programs its later batches reuse


def _open(config: Config, run_dir: Path, trials: int, batch: int, storage: str | None) -> SweepState:
    """Creates the sweep folder (or checks that `run_dir` is this sweep, to continue it) and
    opens the study."""
    optuna = require_optuna()
    marker = run_dir / MARKER
    if marker.exists():
        saved = config_lib.load(run_dir / "config.yaml")
        if saved != config:
            changed = config_lib.state_breaking_changes(saved, config) or ["(settings)"]
            raise ConfigError(f"{run_dir} holds a sweep of another config (it differs in "
                              f"{', '.join(changed)}); continue it with the same config, or pass another --run-dir")
        storage = storage or json.loads(marker.read_text())["storage"]
        print(f"jaxrl: continuing the sweep in {run_dir}", file=sys.stderr)
    else:
        create_run_dir(run_dir)
        (run_dir / "config.yaml").write_text(dump(config))
        storage = storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
        write_json(marker, {"storage": storage, "study": STUDY_NAME})
    space = sweep_lib.parse_space(config.search.space)
    from jaxrl.algos import REGISTRY as ALGOS

    vmappable = sweep_lib.vmappable_keys(ALGOS[config.algo.name], config.env.normalize_reward)
    seed = config.seed if config.search.seed is None else config.search.seed
    from jaxrl.experiment.assemble import build

    built = build(config_lib.from_dict(_without_search(config)))
    chunk_steps = built.updates_per_chunk * built.algo.env_steps_per_update
    try:
        study = optuna.create_study(
            study_name=STUDY_NAME, storage=storage, load_if_exists=True, direction="maximize",
            sampler=make_sampler(optuna, config.search.sampler, seed, batch),
            pruner=make_pruner(optuna, config.search, chunk_steps, built.algo.num_updates * built.algo.env_steps_per_update))
    except Exception as error:  # a bad URL, an unreadable file
        raise RunDirError(f"cannot open the Optuna storage {storage}: {error}") from None
    asked = len(study.get_trials(deepcopy=False))
    if asked and config.search.sampler != "qmc":  # continuing: a fresh random stream, so the
        # sampler does not draw the first trials' values again (QMC keeps its own position)
        study.sampler = make_sampler(optuna, config.search.sampler, seed + asked, batch)
    return SweepState(optuna, study, config, config_lib.to_dict(config), space,
                      {p.key for p in space} - vmappable, run_dir, {})


def _without_search(config: Config) -> dict:
    data = config_lib.to_dict(config)
    return {k: v for k, v in data.items() if k != "search"}


def _finished(state: SweepState) -> int:
    running = state.optuna.trial.TrialState.RUNNING
    return sum(t.state != running for t in state.study.get_trials(deepcopy=False))


def _batches(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "batches").glob("*") if (p / "batch.json").is_file())


def _run_batch(state: SweepState, folder: Path, progress: bool, train_kwargs: dict) -> None:
    """Trains (or, after an interruption, finishes) the batch recorded in `folder/batch.json`
    and tells Optuna each trial's outcome."""
    from jaxrl.experiment.train import prepare_program_folder, train

    record = json.loads((folder / "batch.json").read_text())
    optuna, study = state.optuna, state.study
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    values = {int(n): v for n, v in record["values"].items()}
    running = optuna.trial.TrialState.RUNNING
    for program in (Program(**p) for p in record["programs"]):
        live = {n: optuna.trial.Trial(study, frozen[n]._trial_id) for n in program.trials
                if frozen[n].state == running}
        if not live:
            continue
        try:
            config = program_config(state.base, program, values, state.static_keys)
        except ConfigError as error:  # a static combination the algorithm refuses
            for number, trial in live.items():
                trial.set_user_attr("error", str(error))
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            print(f"jaxrl: trials {sorted(live)} failed: {error}", file=sys.stderr)
            continue
        lay = sweep_lib.layout(config)  # its settings are the program's trials, in order
        members = {number: lay.members_of(i) for i, number in enumerate(program.trials)}
        pruned: set[int] = set()

        def on_report(report: Any) -> bool:
            for number, trial in live.items():
                value = None if number in pruned else intermediate_value(report, members[number])
                if value is None:
                    continue
                trial.report(value, report.env_steps)
                if trial.should_prune():
                    pruned.add(number)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return len(pruned) == len(live)

        path = folder / program.folder
        resume = prepare_program_folder(path)
        summary = train(config, path, progress=progress, resume=resume, on_report=on_report,
                        programs=state.programs.setdefault(program.folder, {}), **train_kwargs)
        if "final_eval" not in summary:  # every trial pruned: the program stopped early
            continue
        rows = {row["setting"]: row for row in summary.get("settings", [])}
        for number, trial in live.items():
            if number in pruned:
                continue
            name = trial_name(number)
            per_seed = np.asarray(rows[name]["per_seed"] if name in rows else summary["final_eval"]["per_seed"])
            value = objective(state.config.search.objective, per_seed, eval_curve(path, name))
            trial.set_user_attr("per_seed", [float(x) for x in per_seed])
            trial.set_user_attr("folder", str(path.relative_to(state.run_dir)))
            if math.isfinite(value):
                study.tell(trial, value)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    record["done"] = True
    write_json(folder / "batch.json", record)


def _ask_batch(state: SweepState, size: int, index: int) -> Path:
    """Asks Optuna for `size` trials and records them, grouped into programs, as batch `index`."""
    dists = distributions(state.space)
    trials = [state.study.ask(dists) for _ in range(size)]
    values = {t.number: config_values(state.space, t.params) for t in trials}
    programs = group_programs(values, state.static_keys)
    folder = state.run_dir / "batches" / f"{index:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "batch.json", {"values": {str(n): v for n, v in values.items()},
                                       "programs": [p._asdict() for p in programs], "done": False})
    return folder


def _orphans_failed(state: SweepState) -> None:
    """Trials asked but never recorded in a batch (the sweep stopped between the two) fail."""
    recorded = {int(n) for b in _batches(state.run_dir) for n in json.loads((b / "batch.json").read_text())["values"]}
    running = state.optuna.trial.TrialState.RUNNING
    for trial in state.study.get_trials(deepcopy=False, states=(running,)):
        if trial.number not in recorded:
            state.study.tell(trial.number, state=state.optuna.trial.TrialState.FAIL)


def sweep(config: Config, run_dir: str | Path, *, trials: int, batch: int | None = None,
          storage: str | None = None, progress: bool = True, **train_kwargs: Any) -> dict[str, Any]:
    """Runs `trials` Optuna trials of `config.search.space`, `batch` at a time as one
    population each (default: min(16, trials)), in `run_dir`; continues the sweep already
    there. `train_kwargs` go to every program's `train` (devices, memory_limit, ...).
    Returns the summary (also written to `run_dir/summary.json`)."""
    if not config.search.space:
        raise ConfigError("jaxrl sweep needs a search: section with a space: (see configs/"
                          "ppo_cartpole_search.yaml), e.g. search: {space: {algo.lr: {type: log_uniform, "
                          "low: 1e-4, high: 1e-2}}}")
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    batch = min(16, trials) if batch is None else batch
    if not 1 <= batch <= trials:
        raise ConfigError(f"--batch {batch} must lie between 1 and --trials {trials} (a batch is "
                          f"the number of trials trained together)")
    with RunLock(Path(run_dir)):  # a second `jaxrl sweep` on this folder is refused
        return _sweep(config, Path(run_dir), trials, batch, storage, progress, train_kwargs)


def _sweep(config: Config, run_dir: Path, trials: int, batch: int, storage: str | None,
           progress: bool, train_kwargs: dict[str, Any]) -> dict[str, Any]:
    """`sweep` in its locked folder: interrupted batches first, then new ones until done."""
    state = _open(config, run_dir, trials, batch, storage)
    start = time.perf_counter()
    _orphans_failed(state)
    for folder in _batches(run_dir):  # an interrupted batch first
        if not json.loads((folder / "batch.json").read_text()).get("done"):
            _run_batch(state, folder, progress, train_kwargs)
    while (left := trials - _finished(state)) > 0:
        raise_if_interrupted()
        index = len(_batches(run_dir))
        folder = _ask_batch(state, min(batch, left), index)
        print(f"jaxrl: batch {index}: {min(batch, left)} trials x {config.seeds} seeds "
              f"({trials - left} of {trials} trials done)", file=sys.stderr)
        _run_batch(state, folder, progress, train_kwargs)
        write_results(state)
    summary = write_results(state, plots=True)
    summary["wall_seconds_this_call"] = time.perf_counter() - start
    return summary


# --- results ----------------------------------------------------------------------------------

def trial_rows(state: SweepState) -> list[dict[str, Any]]:
    """Every trial: number, state, value, its config values and where it trained."""
    rows = []
    for t in state.study.get_trials(deepcopy=False):
        values = config_values(state.space, t.params) if t.params else {}
        per_seed = t.user_attrs.get("per_seed")
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value,
                     "last_step": t.last_step, **values,
                     **(aggregate(np.asarray(per_seed)) if per_seed else {}),
                     "folder": t.user_attrs.get("folder", ""), "error": t.user_attrs.get("error", "")})
    return rows


def best_config(state: SweepState, values: dict[str, Any]) -> Config:
    """The sweep's config with a trial's values fixed and no search left: ready for `jaxrl train`."""
    return config_lib.from_dict(sweep_lib.with_values(_without_search(state.config), values))


def write_results(state: SweepState, plots: bool = False) -> dict[str, Any]:
    """trials.csv, summary.json, best_config.yaml and (with `plots`) the PNGs."""
    from jaxrl.experiment.run_dir import MetricsWriter

    rows = trial_rows(state)
    table = state.run_dir / "trials.csv"
    table.unlink(missing_ok=True)
    MetricsWriter(table).write([{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                                for r in _uniform(rows)])
    complete = sorted((r for r in rows if r["state"] == "complete"), key=lambda r: -r["value"])
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running")}
    keys = [p.key for p in state.space]
    summary: dict[str, Any] = {
        "env": state.config.env.id, "algo": state.config.algo.name, "seeds_per_trial": state.config.seeds,
        "objective": state.config.search.objective, "sampler": state.config.search.sampler,
        "pruner": state.config.search.pruner, "trials": counts,
        "best_trials": [{"rank": i, **{k: r.get(k) for k in ("trial", "value", "iqm", "iqm_ci_low", "iqm_ci_high",
                                                             "mean", "folder")},
                         "values": {k: r.get(k) for k in keys}} for i, r in enumerate(complete[:10], 1)],
        "versions": environment_versions(),
    }
    if complete:
        best = best_config(state, {k: complete[0][k] for k in keys})
        (state.run_dir / "best_config.yaml").write_text(dump(best))
        summary["best_config"] = "best_config.yaml"
    write_json(state.run_dir / "summary.json", summary)
    if plots and complete:
        from jaxrl.analysis.plots import optimization_history, param_importances

        optimization_history([r["trial"] for r in rows], [r["value"] for r in rows], [r["state"] for r in rows],
                             state.run_dir / "plots" / "optimization_history.png",
                             title=f"{state.config.algo.name.upper()} on {state.config.env.id}: "
                                   f"{state.config.search.objective} per trial")
        importances = _importances(state)
        if importances:
            param_importances(importances, state.run_dir / "plots" / "param_importances.png",
                              title=f"parameter importances ({len(complete)} complete trials)")
            summary["param_importances"] = importances
            write_json(state.run_dir / "summary.json", summary)
    summary["run_dir"] = str(state.run_dir)
    return summary


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the same columns (failed trials lack the statistics)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return [{c: row.get(c, "") for c in columns} for row in rows]


def _importances(state: SweepState) -> dict[str, float]:
    """Optuna's fANOVA importance of each searched key (empty when it cannot be computed:
    fewer than two complete trials, or a single key)."""
    complete = state.study.get_trials(deepcopy=False, states=(state.optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2 or len(state.space) < 2:
        return {}
    importance = state.optuna.importance
    try:
        evaluator = importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:  # fANOVA needs scikit-learn (in the optuna extra); PED-ANOVA does not
        evaluator = importance.PedAnovaImportanceEvaluator()
    try:
        return {k: float(v) for k, v in importance.get_param_importances(state.study, evaluator=evaluator).items()}
    except (ValueError, RuntimeError):  # e.g. every complete trial has the same values
        return {}


def format_sweep(summary: dict[str, Any]) -> str:
    """The table the CLI prints: trial counts and the best trials."""
    counts = summary["trials"]
    lines = [f"{sum(counts.values())} trials: {counts['complete']} complete, {counts['pruned']} pruned, "
             f"{counts['fail']} failed; objective {summary['objective']} over {summary['seeds_per_trial']} seeds each"]
    if summary["best_trials"]:
        lines.append("best trials:")
        for row in summary["best_trials"]:
            values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["values"].items())
            ci = (f" [IQM 95% CI {row['iqm_ci_low']:.1f}, {row['iqm_ci_high']:.1f}]"
                  if row.get("iqm_ci_low") is not None else "")
            lines.append(f"  {row['rank']:>2}. trial {row['trial']:<4} {row['value']:9.2f}{ci}   {values}")
        lines.append(f"best config: {Path(summary['run_dir']) / 'best_config.yaml'} (jaxrl train it as it is)")
    lines.append(f"sweep folder: {summary['run_dir']}")
    return "\n".join(lines)
