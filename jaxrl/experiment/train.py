"""`jaxrl train`: a config trained into a run folder, as a plain loop.

`train` assembles the run (`experiment.assemble`: env, algorithm, population driver sized to
memory), opens the run folder, then loops over the chunks of a `population.Run`: after each,
PBT and combiners act (`population_ops.BetweenChunks`), the chunk's rows and timings are
written (`_RunRecord`), a video is recorded when evaluated, a checkpoint saved when due
(`_Checkpoints`), and the run stops early if `on_report` asks; then summary.json and plots.
A resumed run restores the newest checkpoint into the `Run` before it starts. Static sweeps
train one such run per program (`train_static_sweep`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from jaxrl import buffers, distributed, memory, population
from jaxrl import sweep as sweep_lib
from jaxrl.analysis import aggregate
from jaxrl.analysis.plots import hyperparameter_schedules, learning_curve, settings_curves
from jaxrl import config as config_lib
from jaxrl.config import Config, dump
from jaxrl.errors import ConfigError, JaxrlError, RunDirError
from jaxrl.evaluation import episode_limit
from jaxrl.experiment import population_ops
from jaxrl.experiment.assemble import (  # noqa: F401  (make_env and Built: importable from here too)
    Built, build, fit_to_memory, make_env, make_population, members_per_call,
)
from jaxrl.experiment.checkpoints import Checkpointer, check_written_by, plain_config, written_by
from jaxrl.experiment.loggers import make_loggers, require as require_loggers
from jaxrl.runtime import CompileCacheStats, raise_if_interrupted
from jaxrl.experiment.run_dir import (
    RUN_CONFIG_MARK, MetricsWriter, RunLock, append_jsonl, clear_unstarted, create_run_dir, drop_torn_line, has_checkpoint,
    environment_versions, is_empty_folder, is_run_folder, read_metrics, truncate_metrics, write_json, write_text,
)


class _Progress:
    """tqdm bar over updates with SPS and the population's mean/min training return."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="upd", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, desc="training")
        self.bar.set_postfix_str("compiling...")

    def update(self, report: population.ChunkReport, sps: float, updates: int) -> None:
        returns = report.metrics.get("episode_return")
        text = f"{sps:,.0f} steps/s"
        if returns is not None and not np.all(np.isnan(returns)):
            text += f" | return mean {np.nanmean(returns):.1f} min {np.nanmin(returns):.1f}"
        self.bar.set_postfix_str(text)
        self.bar.update(updates)

    def skip(self, updates: int) -> None:
        """Counts updates done before a resume."""
        self.bar.update(updates)

    def close(self) -> None:
        self.bar.close()


def _metric_rows(report: population.ChunkReport, lay: sweep_lib.Layout, sps: float) -> list[dict[str, Any]]:
    """One row per member: its seed (and, in a sweep, its setting), metrics and evaluation."""
    eval_mean = None if report.eval_returns is None else report.eval_returns.mean(axis=1)
    rows = []
    for member in range(lay.members):
        row: dict[str, Any] = {"env_steps": report.env_steps, "update": report.updates_done,
                               "seed": int(lay.seed_index[member])}
        if lay.swept:
            row["setting"] = lay.setting_of(member).name
        row.update({name: float(values[member]) for name, values in sorted(report.metrics.items())})
        row["sps"] = round(sps, 1)
        row["eval_return"] = float("nan") if eval_mean is None else float(eval_mean[member])
        rows.append(row)
    return rows


def _checkpoint_every_chunks(config: Config, built: Built) -> int:
    """Chunks between checkpoints (0: only at the end)."""
    chunk_steps = built.updates_per_chunk * built.algo.env_steps_per_update
    every = config.checkpoint.every_env_steps
    return math.ceil(every / chunk_steps) if every else 0


def _score(report: population.ChunkReport) -> float:
    """What 'best checkpoint' means: mean eval return when evaluated, else mean training return."""
    values = report.eval_returns if report.eval_returns is not None else report.metrics.get("episode_return")
    return float(np.nanmean(values)) if values is not None and not np.all(np.isnan(values)) else -np.inf


def _curves_from_csv(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Env steps and, per setting ("" without a sweep), training returns [points, seeds]."""
    rows = read_metrics(path)
    steps = sorted({int(row["env_steps"]) for row in rows})
    index = {step: i for i, step in enumerate(steps)}
    seeds = 1 + max((int(row["seed"]) for row in rows), default=0)
    curves: dict[str, np.ndarray] = {}
    for row in rows:
        curve = curves.setdefault(row.get("setting", ""), np.full((len(steps), seeds), np.nan))
        if row.get("episode_return"):
            curve[index[int(row["env_steps"])], int(row["seed"])] = float(row["episode_return"])
    return np.array(steps), curves


def _setting_summaries(settings: list[tuple[sweep_lib.Setting, np.ndarray]]) -> list[dict[str, Any]]:
    """Each setting's final evaluation statistics, best IQM first, with its rank."""
    rows = [{"setting": s.name, "values": s.values, "per_seed": [round(float(x), 3) for x in finals],
             **aggregate(finals)} for s, finals in settings]
    rows.sort(key=lambda row: -row["iqm"])
    return [{"rank": rank, **row} for rank, row in enumerate(rows, 1)]


class _RunRecord:
    """What a run writes as it goes, checkpoints aside: metrics.csv rows, timings.jsonl
    events, the loggers' points, the progress bar and videos of the best member's episode.
    Only process 0 logs (`out_dir` of the others is a scratch folder)."""

    def __init__(self, config: Config, built: Built, lay: sweep_lib.Layout, memory_plan: memory.MemoryPlan,
                 out_dir: Path, progress: bool):
        primary = distributed.is_primary()
        self.config, self.built, self.lay, self.memory_plan, self.out_dir = config, built, lay, memory_plan, out_dir
        self.metrics = MetricsWriter(out_dir / "metrics.csv")
        self.loggers = make_loggers(config, out_dir) if primary else []
        for logger in self.loggers:
            logger.log_config(config_lib.to_dict(config))
        if primary:
            print(f"jaxrl: {memory_plan.describe()}", file=sys.stderr)
        self.bar = _Progress(built.algo.num_updates, progress and primary)
        self.last_updates = 0

    def event(self, name: str, **fields: Any) -> None:
        """One line of timings.jsonl."""
        append_jsonl(self.out_dir / "timings.jsonl", {"event": name, **fields})

    def resumed(self, updates_done: int) -> None:
        """Continuing after `updates_done` updates: metrics.csv loses the rows logged after that
        (and timings.jsonl a record a kill cut short, so the next one starts on its own line)."""
        self.metrics.columns = truncate_metrics(self.out_dir / "metrics.csv", updates_done)
        drop_torn_line(self.out_dir / "timings.jsonl")
        self.last_updates = updates_done
        self.bar.skip(updates_done)
        self.event("resume", from_update=updates_done)

    def started(self, pop: population.Driver) -> None:
        """The population is initialised and compiled."""
        members, count, plan = pop.members, self.lay.members, self.memory_plan
        self.event("init", compile_seconds=round(members.compile_seconds, 3), devices=members.mesh.size,
                   members=count, padded_members=members.padded_members, calls_per_chunk=members.calls,
                   state_bytes=plan.member_bytes * count, replay_bytes=plan.replay_bytes * count)

    def chunk(self, report: population.ChunkReport) -> None:
        """A chunk's metrics.csv rows, timings, progress and logger point."""
        raise_if_interrupted()  # a Ctrl-C that Python dropped stops the run here
        updates = report.updates_done - self.last_updates
        self.last_updates = report.updates_done
        sps = updates * self.built.algo.env_steps_per_update * self.lay.members / max(report.seconds, 1e-9)
        self.metrics.write(_metric_rows(report, self.lay, sps))
        split = {f"{name}_seconds": round(value, 4)  # host envs: waiting on envs / device, host work
                 for name, value in (report.time_split or {}).items()}
        self.event("chunk", chunk=report.chunk, updates=updates, env_steps_per_member=report.env_steps,
                   seconds=round(report.seconds, 4), sps=round(sps, 1),
                   eval_seconds=round(report.eval_seconds, 4), **split)
        self.bar.update(report, sps, updates)
        per_seed = dict(report.metrics)
        if report.eval_returns is not None:
            per_seed["eval_return"] = report.eval_returns.mean(axis=1)
        lay = self.lay
        groups = {s.name: lay.members_of(i) for i, s in enumerate(lay.settings)} if lay.swept else None
        for logger in self.loggers:
            logger.log_point(report.env_steps, per_seed, groups)

    def video(self, report: population.ChunkReport, state: Any) -> None:
        """videos/: an episode of the member with the best evaluation return (`state`: the real members')."""
        from jaxrl.experiment.evaluate import play_episode, render_episode

        start = time.perf_counter()
        best = int(np.argmax(report.eval_returns.mean(axis=1)))
        max_steps = self.config.eval.max_steps or episode_limit(self.built.env_params)
        rows, states = play_episode(self.config, self.built.algo, state, best, max_steps)
        path = render_episode(self.config, rows, states,
                              self.out_dir / "videos" / f"eval_step{report.env_steps}_seed{best}")
        self.event("video", path=str(path.relative_to(self.out_dir)),
                   seconds=round(time.perf_counter() - start, 3))

    def close(self) -> None:
        self.bar.close()
        for logger in self.loggers:
            logger.close()


class _Checkpoints:
    """The run's checkpoints: when they are due, what they hold (the real members' state —
    without its replay buffer unless `checkpoint.replay_buffer` — and a progress record with
    PBT's hyperparameters and the between-chunks state) and continuing from the newest."""

    def __init__(self, config: Config, built: Built, run_dir: Path, record: _RunRecord):
        self.checkpointer = Checkpointer(run_dir / "checkpoints", config.checkpoint.keep_last,
                                         config.checkpoint.keep_best)
        self.every = _checkpoint_every_chunks(config, built)
        self.algo, self.pbt, self.record = built.algo, config.pbt.enabled, record
        self.config, self.written_by = plain_config(config), written_by(config)
        self.skips_buffer = self.algo.replay_field is not None and not config.checkpoint.replay_buffer

    def _saved_part(self, state: Any) -> Any:
        """The state as checkpointed: without its replay buffer when the config says so."""
        return state._replace(**{self.algo.replay_field: None}) if self.skips_buffer else state

    def restore(self, run: population.Run, between: population_ops.BetweenChunks | None) -> None:
        """Continues `run` (and `between`) from the newest readable checkpoint."""
        abstract = run.abstract_state()
        restored = self.checkpointer.restore_latest(self._saved_part(abstract), self.written_by)
        state = restored.state
        if state is not None and self.skips_buffer:  # a fresh, empty buffer refills
            state = state._replace(**{self.algo.replay_field: buffers.empty_like(
                getattr(abstract, self.algo.replay_field))})
        self.record.resumed(restored.step)
        if between is not None:
            between.load_state_dict(restored.progress.get("episodes_since", {}))
        saved_hparams = restored.progress.get("hparams")  # PBT changed them during the run
        run.restore(state, restored.step, population_ops.hparams_from_json(saved_hparams, self.algo.default_hparams)
                    if saved_hparams else None)

    def save_if_due(self, report: population.ChunkReport, run: population.Run,
                    between: population_ops.BetweenChunks | None) -> None:
        """A checkpoint after the last chunk and every `checkpoint.every_env_steps`."""
        last = report.updates_done >= self.algo.num_updates
        if not (last or (self.every and (report.chunk + 1) % self.every == 0)):
            return
        start = time.perf_counter()
        members = run.driver.members
        progress = {"updates_done": report.updates_done, "env_steps": report.env_steps, "chunk": report.chunk,
                    "config": self.config}
        if self.pbt:  # hyperparameters are part of the state under PBT
            progress["hparams"] = population_ops.hparams_to_json(members.fetch(members.unpad(run.hparams)))
        if between is not None:  # episode schedules count from their last application
            progress["episodes_since"] = between.state_dict()
        self.checkpointer.save(report.updates_done, self._saved_part(members.unpad(run.state)), progress,
                               _score(report))
        self.record.event("checkpoint", update=report.updates_done,
                          seconds=round(time.perf_counter() - start, 4))

    def close(self) -> None:
        self.checkpointer.close()


def _check_before_starting(config: Config, built: Built) -> None:
    """Refuses now, before a run folder exists, what would fail only later."""
    require_loggers(config.loggers)
    if config.eval.video:
        from jaxrl.experiment.evaluate import check_renderer

        check_renderer(config)
    if built.host is not None and distributed.process_count() > 1 and config.combine.strategy == "data_parallel":
        raise ConfigError(f"under --distributed each process steps the host envs ({config.env.id}) of its own "
                          f"members, but combine.strategy data_parallel makes every member one learner over all "
                          f"processes; choose another strategy, or run without --distributed")


def _open_run_folder(config: Config, run_dir: Path, resume: bool) -> Path:
    """Creates the run folder (unless resuming); returns where this process writes.
    Several processes (jax.distributed) train one population: all of them checkpoint into
    run_dir together; only process 0 writes the rest, the others write into a scratch folder."""
    primary = distributed.is_primary()
    if not resume and primary:
        create_run_dir(run_dir)
        (run_dir / "checkpoints").mkdir()
        write_config(run_dir, config)  # last: a folder with config.yaml is a run folder
    distributed.barrier("run folder ready")
    return run_dir if primary else distributed.scratch_dir()


def train(config: Config, run_dir: str | Path, *, progress: bool = True,
          devices: Sequence[Any] | None = None, resume: bool = False,
          max_members_per_call: int | None = None, memory_limit: int | None = None,
          on_report: Callable[[population.ChunkReport], bool] | None = None,
          programs: dict | None = None) -> dict[str, Any]:
    """Trains `config.seeds` members of every setting of the config's sweep, writes the run
    folder and returns the summary.

    Everything that can be wrong with the config (env id, action space, shapes) is checked
    by `build` before the run folder is created, so a bad config leaves nothing behind.
    With `resume=True`, `run_dir` is an interrupted run of this same config: training
    continues from its newest readable checkpoint, and metrics.csv loses the rows logged
    after that checkpoint, so the finished folder equals an uninterrupted run's.
    A sweep over static fields trains one program per static setting, each in its own
    folder inside `run_dir` (see `train_static_sweep`). `max_members_per_call` caps the
    members of one compiled call (default: as many as fit in memory, or `memory_limit` bytes).
    `on_report(report)` sees every chunk's report (after it is logged and checkpointed) and
    may end the run there by returning True (`jaxrl sweep` when a pruner stopped every trial);
    such a run's summary has `stopped_at_env_steps` and no final evaluation. `programs`
    shares compiled programs with earlier runs of the same program (see `jaxrl.members.Members`).
    """
    with lock_run_folder(run_dir):
        fresh = not resume and distributed.is_primary() and is_empty_folder(run_dir)
        try:
            if sweep_lib.split(config.sweep)[1]:
                return train_static_sweep(config, run_dir, progress=progress, devices=devices, resume=resume,
                                          max_members_per_call=max_members_per_call, memory_limit=memory_limit)
            return _train_program(config, Path(run_dir), progress=progress, devices=devices, resume=resume,
                                  max_members_per_call=max_members_per_call, memory_limit=memory_limit,
                                  on_report=on_report, programs=programs)
        except JaxrlError:
            if fresh and is_run_folder(run_dir) and not interrupted(run_dir):
                clear_unstarted(Path(run_dir))  # a new run refused on the way leaves nothing behind
            raise


def lock_run_folder(run_dir: str | Path) -> contextlib.AbstractContextManager:
    """The run folder's lock (`RunLock`), held by process 0 (the others write no run files)."""
    return RunLock(run_dir) if distributed.is_primary() else contextlib.nullcontext()


def _train_program(config: Config, run_dir: Path, *, progress: bool, devices: Sequence[Any] | None,
                   resume: bool, max_members_per_call: int | None, memory_limit: int | None,
                   on_report: Callable[[population.ChunkReport], bool] | None,
                   programs: dict | None) -> dict[str, Any]:
    """`train` of one compiled program (no static sweep), in its locked run folder."""
    built, lay = build(config), sweep_lib.layout(config)
    memory_plan = memory.plan(built.algo, lay.members, devices, memory_limit)
    per_call = members_per_call(config, built, memory_plan, max_members_per_call)
    _check_before_starting(config, built)
    out_dir = _open_run_folder(config, run_dir, resume)
    record = _RunRecord(config, built, lay, memory_plan, out_dir, progress)
    checkpoints = _Checkpoints(config, built, run_dir, record)
    start, cache_stats, pop = time.perf_counter(), CompileCacheStats(), None
    hparams = (sweep_lib.stacked_hparams(config, lay) if lay.swept
               else population.broadcast_hparams(built.algo.default_hparams, lay.members))
    try:
        pop = make_population(config, built, devices, per_call, programs)
        if built.host is None and max_members_per_call is None:
            pop = fit_to_memory(config, built, pop, hparams, devices, memory_limit, programs)
        between = population_ops.make_between_chunks(config, pop, built.algo.num_updates, built.updates_per_chunk,
                                                     built.algo.env_steps_per_update)
        run = population.Run(pop, seed=config.seed, hparams=hparams, updates_per_chunk=built.updates_per_chunk,
                             eval_every_chunks=built.eval_every_chunks)
        if resume:
            checkpoints.restore(run, between)
        run.start()
        record.started(pop)
        for report in run:
            if between is not None:  # population-based training, combiners
                report = run.between_chunks(between.apply)
            record.chunk(report)
            if config.eval.video and report.eval_returns is not None:
                record.video(report, pop.members.unpad(run.state))
            checkpoints.save_if_due(report, run, between)
            if on_report is not None and on_report(report):  # e.g. a sweep whose trials were all pruned
                break
        result = run.result()
    finally:
        for part in (pop, cache_stats, record, checkpoints):
            if part is not None:
                part.close()
    return _summarise(config, lay, result, time.perf_counter() - start, cache_stats, record, run_dir)


def _summarise(config: Config, lay: sweep_lib.Layout, result: population.RunResult, wall: float,
               cache_stats: CompileCacheStats, record: _RunRecord, run_dir: Path) -> dict[str, Any]:
    """The run's last timings line, summary.json and plots; returns the summary."""
    out_dir, algo = record.out_dir, record.built.algo
    record.event("end", compile_seconds=round(result.compile_seconds, 3),
                 steady_sps=round(result.steady_sps, 1), wall_seconds=round(wall, 3))
    summary = {
        "env": config.env.id, "algo": config.algo.name, "seeds": config.seeds,
        "total_env_steps_per_seed": algo.num_updates * algo.env_steps_per_update,
        "steady_sps": result.steady_sps, "compile_seconds": result.compile_seconds,
        "wall_seconds": wall, "devices": result.num_devices, "processes": distributed.process_count(),
        "compile_cache": cache_stats.as_dict(), "versions": environment_versions(),
    }
    if result.final_eval_returns is None:  # stopped early by `on_report`
        summary["stopped_at_env_steps"] = result.reports[-1].env_steps if result.reports else 0
    else:
        final = result.final_eval_returns.mean(axis=1)
        summary["final_eval"] = {"episodes_per_seed": config.eval.episodes,
                                 "deterministic": config.eval.deterministic,
                                 "per_seed": [round(float(x), 3) for x in final], **aggregate(final)}
        if lay.swept:  # each setting's own statistics, ranked; final_eval covers every member
            summary["settings"] = _setting_summaries(
                [(s, final[lay.members_of(i)]) for i, s in enumerate(lay.settings)])
    write_json(out_dir / "summary.json", summary)
    _plot_curves(out_dir, config, members_plot_title(config, lay))
    if config.pbt.enabled:
        _plot_schedules(out_dir, config)
    summary["run_dir"] = str(run_dir)
    return summary


def members_plot_title(config: Config, lay: sweep_lib.Layout) -> str:
    settings = f" x {len(lay.settings)} settings" if lay.swept else ""
    return f"{config.algo.name.upper()} on {config.env.id} ({config.seeds} seeds{settings})"


def _plot_curves(run_dir: Path, config: Config, title: str, folders: Sequence[Path] = ()) -> None:
    """plots/learning_curve.png from metrics.csv (or the program folders' metrics.csv files):
    one line per setting."""
    steps, curves = None, {}
    for folder in folders or [run_dir]:
        steps, found = _curves_from_csv(folder / "metrics.csv")
        prefix = "" if not folders else folder.name
        curves.update({",".join(x for x in (prefix, name) if x): curve for name, curve in found.items()})
    if len(curves) == 1:
        learning_curve(steps, next(iter(curves.values())), run_dir / "plots" / "learning_curve.png", title=title)
    else:
        settings_curves(steps, curves, run_dir / "plots" / "learning_curve.png", title=title)


def _plot_schedules(run_dir: Path, config: Config) -> None:
    """plots/pbt_hyperparameters.png: each member's perturbed hyperparameters over training."""
    rows = read_metrics(run_dir / "metrics.csv")
    steps = sorted({int(row["env_steps"]) for row in rows})
    index = {step: i for i, step in enumerate(steps)}
    members = sum(int(row["env_steps"]) == steps[0] for row in rows)  # rows come member by member
    values = {}
    for name in config.pbt.hyperparameters:
        table = np.full((len(steps), members), np.nan)
        for position, row in enumerate(rows):
            if row.get(f"hp_{name}"):
                table[index[int(row["env_steps"])], position % members] = float(row[f"hp_{name}"])
        values[name] = table
    hyperparameter_schedules(np.array(steps), values, run_dir / "plots" / "pbt_hyperparameters.png",
                             title=f"PBT on {config.env.id}: each member's hyperparameters")


def train_static_sweep(config: Config, run_dir: str | Path, *, progress: bool = True,
                       devices: Sequence[Any] | None = None, resume: bool = False,
                       max_members_per_call: int | None = None, memory_limit: int | None = None
                       ) -> dict[str, Any]:
    """One program per static setting, in sequence, each a complete run folder
    `run_dir/<static setting>/` (its own vmapped settings inside); then `run_dir/summary.json`
    ranks every setting of every program. Resuming skips finished programs and continues an
    interrupted one."""
    run_dir = Path(run_dir)
    statics = sweep_lib.static_settings(config)
    programs = [(s, sweep_lib.fixed_config(config, s.values, keep_vmapped=True)) for s in statics]
    for _, program in programs:  # every program's config is checked before anything runs
        build(program)
    if not resume and distributed.is_primary():
        create_run_dir(run_dir)
        write_config(run_dir, config)
    distributed.barrier("sweep folder ready")
    settings, program_rows, folders = [], [], []
    for static, program in programs:
        folder = run_dir / sweep_lib.folder_name(static)
        folders.append(folder)
        if (folder / "summary.json").exists():  # finished before an interruption
            summary = json.loads((folder / "summary.json").read_text())
        else:
            again = prepare_program_folder(folder)
            if distributed.is_primary():
                print(f"jaxrl: program {static.name} ({len(programs)} in sequence) in {folder}", file=sys.stderr)
            summary = train(program, folder, progress=progress, devices=devices, resume=again,
                            max_members_per_call=max_members_per_call, memory_limit=memory_limit)
        program_rows.append({"program": folder.name, "values": static.values,
                             "steady_sps": summary["steady_sps"], "compile_seconds": summary["compile_seconds"],
                             "wall_seconds": summary["wall_seconds"]})
        for row in summary.get("settings") or [{"setting": "", "values": {}, "per_seed": summary["final_eval"]["per_seed"]}]:
            name = ",".join(x for x in (static.name, row["setting"]) if x)
            settings.append((sweep_lib.Setting(name, {**static.values, **row["values"]}),
                             np.asarray(row["per_seed"])))
    ranked = _setting_summaries(settings)
    summary = {"env": config.env.id, "algo": config.algo.name, "seeds": config.seeds,
               "programs": program_rows, "settings": ranked, "best": ranked[0]["setting"],
               "compile_seconds": sum(p["compile_seconds"] for p in program_rows),
               "wall_seconds": sum(p["wall_seconds"] for p in program_rows),
               "versions": environment_versions()}
    if distributed.is_primary():
        write_json(run_dir / "summary.json", summary)
        _plot_curves(run_dir, config, f"{config.algo.name.upper()} on {config.env.id} "
                                      f"({config.seeds} seeds x {len(ranked)} settings)", folders)
    summary["run_dir"] = str(run_dir)
    return summary


def prepare_program_folder(folder: Path) -> bool:
    """Before a program of a sweep trains into `folder`: whether to resume it (it stopped
    after a checkpoint). A folder that stopped before its first checkpoint is set aside
    (renamed `*.incomplete-<time>`) so the program starts over; nothing is deleted."""
    again = folder.exists() and interrupted(folder)
    if folder.exists() and not again and distributed.is_primary():
        folder.rename(folder.with_name(f"{folder.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}"))
    distributed.barrier(f"program {folder.name} ready")
    return again


def interrupted(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a run that stopped before its end and left a checkpoint (or,
    for a static sweep, at least one of its program folders)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or (run_dir / "summary.json").exists():
        return False
    if has_checkpoint(run_dir):
        return True
    return any((p / "config.yaml").is_file() for p in run_dir.iterdir() if p.is_dir())


def write_config(run_dir: Path, config: Config) -> None:
    """The run's config.yaml, written atomically and marked as a run folder's."""
    write_text(run_dir / "config.yaml", RUN_CONFIG_MARK + dump(config))


def open_run(run_dir: str | Path, requested: Config | None = None, overrides: Sequence[str] = (),
             resume: bool = False) -> tuple[Config, bool]:
    """What `jaxrl train` does with `run_dir`, as `(config, resume)`: a folder that is not a run
    is a new run (`requested`; refused with `resume`); an interrupted run of the same config
    is resumed (its own config plus `overrides` when `requested` is None); a run that stopped
    before its first checkpoint is cleared and started over; a finished run, or one of a config
    whose saved state cannot continue, is refused. Call it holding `lock_run_folder(run_dir)`."""
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        if resume or requested is None:
            raise RunDirError(f"{run_dir} is not a jaxrl run folder (no config.yaml and run files); "
                              f"--resume takes the folder of an earlier `jaxrl train`")
        distributed.barrier("run folder read")  # no process creates it before every process has looked
        return requested, False
    if (run_dir / "summary.json").exists():
        raise RunDirError(f"run folder {run_dir} already exists and its run already finished (it has "
                          f"summary.json); nothing was changed. Train again with another --run-dir")
    saved = config_lib.load(run_dir / "config.yaml")
    config = requested if requested is not None else config_lib.load(run_dir / "config.yaml", overrides)
    changed = config_lib.state_breaking_changes(saved, config)
    if changed:
        raise ConfigError(f"cannot resume {run_dir}: the config differs from the run's in {', '.join(changed)}; "
                          f"only eval.*, checkpoint.*, loggers, wandb.*, env.num_workers and env.step_timeout "
                          f"may change. Start a new run with another --run-dir")
    primary, started = distributed.is_primary(), interrupted(run_dir)
    distributed.barrier("run folder read")  # every process decides on the same folder; 0 changes it
    if not started:  # stopped before its first checkpoint: what it logged is redone exactly
        if primary:
            clear_unstarted(run_dir)
            print(f"jaxrl: the run in {run_dir} stopped before its first checkpoint; starting it over",
                  file=sys.stderr)
        return config, False
    check_written_by(run_dir / "checkpoints", config)  # config.yaml edited since they were written
    if primary:
        if config != saved:
            write_config(run_dir, config)
        print(f"jaxrl: resuming the interrupted run in {run_dir}", file=sys.stderr)
    return config, True


def _cache_note(cache: dict | None) -> str:
    """`(cache: 3 programs loaded, 41.2 s of compiling saved)` when the cache served any."""
    if not cache or not cache.get("hits"):
        return ""
    return f" (compilation cache: {cache['hits']} program(s) loaded, {cache['seconds_saved']:.1f} s of compiling saved)"


def format_summary(summary: dict[str, Any]) -> str:
    """The short final table the CLI prints (a sweep: its settings ranked by IQM)."""
    lines = []
    if "settings" in summary:
        lines.append(f"settings ranked by IQM of the final greedy evaluation ({summary['seeds']} seeds each):")
        for row in summary["settings"][:20]:
            lines.append(f"  {row['rank']:>3}. {row['setting']:<40} IQM {row['iqm']:9.1f} "
                         f"[95% CI {row['iqm_ci_low']:.1f}, {row['iqm_ci_high']:.1f}]   mean {row['mean']:.1f}")
        if len(summary["settings"]) > 20:
            lines.append(f"  ... {len(summary['settings']) - 20} more in summary.json")
    if "final_eval" in summary:
        ev = summary["final_eval"]
        everyone = " (every member of every setting)" if "settings" in summary else ""
        lines += [
            f"final greedy evaluation over {summary['seeds']} seeds{everyone} "
            f"({ev['episodes_per_seed']} episodes each, {summary['total_env_steps_per_seed']:,} env steps/seed):",
            f"  mean {ev['mean']:.1f}   std {ev['std']:.1f}   "
            f"IQM {ev['iqm']:.1f} [95% CI {ev['iqm_ci_low']:.1f}, {ev['iqm_ci_high']:.1f}]   "
            f"min {ev['min']:.1f}   max {ev['max']:.1f}",
            f"  steady {summary['steady_sps']:,.0f} env steps/s on {summary['devices']} "
            f"{summary['versions']['platform']} device(s); compile {summary['compile_seconds']:.1f} s"
            f"{_cache_note(summary.get('compile_cache'))}; wall {summary['wall_seconds']:.1f} s"]
    else:
        lines.append(f"  {len(summary['programs'])} programs; compile {summary['compile_seconds']:.1f} s; "
                     f"wall {summary['wall_seconds']:.1f} s")
    lines.append(f"run folder: {summary['run_dir']}")
    return "\n".join(lines)
