"""`train`: config -> env -> algorithm -> population run -> run folder, with a progress bar."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxrl import buffers, memory, population
from jaxrl.algos import REGISTRY as ALGOS
from jaxrl.algos.base import Algorithm
from jaxrl.analysis import aggregate
from jaxrl.analysis.plots import learning_curve
from jaxrl import config as config_lib
from jaxrl.config import Config, dump
from jaxrl.errors import ConfigError, RunDirError
from jaxrl.envs import make_vec, registered_ids
from jaxrl.envs.host import HostEnvError, HostEnvSpec, JaxStandIn, host_spec, open_host_env, resolve_backend
from jaxrl.evaluation import episode_limit, make_evaluator
from jaxrl.experiment.checkpoints import CheckpointError, Checkpointer
from jaxrl.experiment.loggers import make_loggers, require as require_loggers
from jaxrl.experiment.run_dir import (
    MetricsWriter, append_jsonl, create_run_dir, environment_versions, read_metrics,
    truncate_metrics, write_json,
)


class Built(NamedTuple):
    algo: Algorithm
    env_params: Any
    evaluator: Any  # None for host envs: `HostPopulation` evaluates on its own envs
    updates_per_chunk: int
    eval_every_chunks: int
    host: HostEnvSpec | None = None  # set when the env is stepped on the host


def make_env(config: Config, num_envs: int, update_stats: bool = True,
             group_size: int = 1) -> tuple[Any, Any]:
    """The vectorised env with the wrappers `config.env` asks for."""
    return make_vec(config.env.id, num_envs, normalize_obs=config.env.normalize_obs,
                    normalize_reward=config.env.normalize_reward, gamma=config.algo.gamma,
                    update_stats=update_stats, env_kwargs=config.env.kwargs, group_size=group_size)


def _host_spec(config: Config, backend: str) -> HostEnvSpec:
    """The host env's spec, after refusing what the host path does not do."""
    for wrapper in ("normalize_obs", "normalize_reward"):
        if getattr(config.env, wrapper):
            raise ConfigError(f"env.{wrapper} is not available for host envs ({config.env.id} runs "
                              f"on the {backend} backend); set env.{wrapper}: false")
    try:
        return host_spec(config.env.id, backend, config.env.kwargs)
    except HostEnvError as error:
        if config.env.backend == "auto" and str(error).startswith("unknown"):
            raise HostEnvError(f"unknown env id {config.env.id!r}: neither jaxrl/gymnax (`jaxrl envs` "
                               f"lists them) nor gymnasium knows it. {error}") from None
        raise


def build(config: Config) -> Built:
    """The algorithm, evaluator and chunking that `config` describes (nothing runs yet)."""
    group = getattr(config.algo, "group_size", 1)  # GRPO: G rollouts from each start state
    backend = resolve_backend(config.env.id, config.env.backend, registered_ids())
    spec, evaluator = None, None
    if backend == "jax":
        env, env_params = make_env(config, config.env.num_envs * group, group_size=group)
    else:
        spec = _host_spec(config, backend)
        env = JaxStandIn(spec, config.env.num_envs * group, group)
        env_params = env.default_params
    algo = ALGOS[config.algo.name].make(config.algo, env, env_params, config.total_env_steps)
    if backend == "jax":
        eval_env, _ = make_env(config, config.eval.episodes, update_stats=False)
        max_steps = config.eval.max_steps or episode_limit(env_params)
        evaluator = make_evaluator(algo, eval_env, env_params, max_steps, config.eval.deterministic)
    elif algo.host is None:
        raise ConfigError(f"{config.algo.name} cannot train on host envs like {config.env.id}")
    updates_per_chunk = max(1, config.log_every_env_steps // algo.env_steps_per_update)
    chunk_steps = updates_per_chunk * algo.env_steps_per_update
    eval_every = math.ceil(config.eval.every_env_steps / chunk_steps) if config.eval.every_env_steps else 0
    return Built(algo, env_params, evaluator, updates_per_chunk, eval_every, spec)


def make_population(config: Config, built: Built, devices: Sequence[Any] | None = None
                    ) -> population.Population:
    """The population driver for `built`: compiled env steps, or host envs in workers."""
    if built.host is None:
        return population.Population(built.algo, config.seeds, devices=devices, evaluator=built.evaluator)
    from jaxrl.host_loop import HostPopulation

    spec = built.host

    def open_env(num_envs: int) -> Any:
        return open_host_env(spec, num_envs, num_workers=config.env.num_workers,
                             timeout=config.env.step_timeout, seed=config.seed)

    return HostPopulation(
        built.algo, config.seeds, open_env=open_env, observation_space=spec.observation_space,
        envs_per_member=config.env.num_envs * getattr(config.algo, "group_size", 1),
        seed=config.seed, eval_episodes=config.eval.episodes,
        eval_max_steps=config.eval.max_steps or spec.max_episode_steps or 1000,
        deterministic=config.eval.deterministic, devices=devices)


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


def _metric_rows(report: population.ChunkReport, num_members: int, sps: float) -> list[dict[str, Any]]:
    eval_mean = None if report.eval_returns is None else report.eval_returns.mean(axis=1)
    rows = []
    for member in range(num_members):
        row: dict[str, Any] = {"env_steps": report.env_steps, "update": report.updates_done,
                               "seed": member}
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


def _curve_from_csv(path: Path, members: int) -> tuple[np.ndarray, np.ndarray]:
    """Env steps and per-member training returns [points, members] from metrics.csv."""
    rows = read_metrics(path)
    steps = sorted({int(row["env_steps"]) for row in rows})
    index = {step: i for i, step in enumerate(steps)}
    returns = np.full((len(steps), members), np.nan)
    for row in rows:
        if row.get("episode_return"):
            returns[index[int(row["env_steps"])], int(row["seed"])] = float(row["episode_return"])
    return np.array(steps), returns


def train(config: Config, run_dir: str | Path, *, progress: bool = True,
          devices: Sequence[Any] | None = None, resume: bool = False) -> dict[str, Any]:
    """Trains `config.seeds` members, writes the run folder and returns the summary.

    Everything that can be wrong with the config (env id, action space, shapes) is checked
    by `build` before the run folder is created, so a bad config leaves nothing behind.
    With `resume=True`, `run_dir` is an interrupted run of this same config: training
    continues from its newest readable checkpoint, and metrics.csv loses the rows logged
    after that checkpoint, so the finished folder equals an uninterrupted run's.
    """
    built = build(config)
    memory_plan = memory.plan(built.algo, config.seeds, devices)
    memory.check(memory_plan)
    require_loggers(config.loggers)
    if config.eval.video:
        from jaxrl.experiment.evaluate import check_renderer

        check_renderer(config)
    run_dir = Path(run_dir)
    if not resume:
        create_run_dir(run_dir)
        (run_dir / "config.yaml").write_text(dump(config))
    metrics_path, timings = run_dir / "metrics.csv", run_dir / "timings.jsonl"
    algo, members = built.algo, config.seeds
    checkpointer = Checkpointer(run_dir / "checkpoints", config.checkpoint.keep_last,
                                config.checkpoint.keep_best)
    checkpoint_every = _checkpoint_every_chunks(config, built)
    metrics_writer = MetricsWriter(metrics_path)
    loggers = make_loggers(config, run_dir)
    for logger in loggers:
        logger.log_config(config_lib.to_dict(config))
    print(f"jaxrl: {memory_plan.describe()}", file=sys.stderr)
    bar = _Progress(algo.num_updates, progress)
    last_updates = [0]
    skips_buffer = algo.replay_field is not None and not config.checkpoint.replay_buffer

    def saved_part(state: Any) -> Any:
        """The state as checkpointed: without its replay buffer when the config says so."""
        return state._replace(**{algo.replay_field: None}) if skips_buffer else state

    def restore(pop: population.Population, abstract_state: Any):
        if not resume:
            return None
        restored = checkpointer.restore_latest(saved_part(abstract_state))
        if restored.state is not None and skips_buffer:  # a fresh, empty buffer refills
            buffer = buffers.empty_like(getattr(abstract_state, algo.replay_field))
            restored = restored._replace(state=restored.state._replace(**{algo.replay_field: buffer}))
        kept = truncate_metrics(metrics_path, restored.step)
        metrics_writer.columns = kept
        last_updates[0] = restored.step
        bar.skip(restored.step)
        append_jsonl(timings, {"event": "resume", "from_update": restored.step})
        return restored.state, restored.step

    def on_start(pop: population.Population) -> None:
        append_jsonl(timings, {"event": "init", "compile_seconds": round(pop.compile_seconds, 3),
                               "devices": pop.mesh.size, "state_bytes": memory_plan.member_bytes * members,
                               "replay_bytes": memory_plan.replay_bytes * members})

    def on_chunk(report: population.ChunkReport) -> None:
        updates = report.updates_done - last_updates[0]
        last_updates[0] = report.updates_done
        sps = updates * algo.env_steps_per_update * members / max(report.seconds, 1e-9)
        metrics_writer.write(_metric_rows(report, members, sps))
        split = {} if report.env_seconds is None else {  # host envs: stepping vs device work
            "env_seconds": round(report.env_seconds, 4),
            "device_seconds": round(report.seconds - report.env_seconds, 4)}
        append_jsonl(timings, {
            "event": "chunk", "chunk": report.chunk, "updates": updates,
            "env_steps_per_member": report.env_steps, "seconds": round(report.seconds, 4),
            "sps": round(sps, 1), "eval_seconds": round(report.eval_seconds, 4), **split})
        bar.update(report, sps, updates)
        per_seed = dict(report.metrics)
        if report.eval_returns is not None:
            per_seed["eval_return"] = report.eval_returns.mean(axis=1)
        for logger in loggers:
            logger.log_point(report.env_steps, per_seed)

    def record_best_episode(report: population.ChunkReport, state: Any) -> None:
        from jaxrl.experiment.evaluate import play_episode, render_episode

        start = time.perf_counter()
        best = int(np.argmax(report.eval_returns.mean(axis=1)))
        max_steps = config.eval.max_steps or episode_limit(built.env_params)
        rows, states = play_episode(config, algo, state, best, max_steps)
        path = render_episode(config, rows, states,
                              run_dir / "videos" / f"eval_step{report.env_steps}_seed{best}")
        append_jsonl(timings, {"event": "video", "path": str(path.relative_to(run_dir)),
                               "seconds": round(time.perf_counter() - start, 3)})

    def after_chunk(report: population.ChunkReport, state: Any) -> None:
        if config.eval.video and report.eval_returns is not None:
            record_best_episode(report, state)
        last = report.updates_done >= algo.num_updates
        if last or (checkpoint_every and (report.chunk + 1) % checkpoint_every == 0):
            start = time.perf_counter()
            checkpointer.save(report.updates_done, saved_part(state),
                              {"updates_done": report.updates_done, "env_steps": report.env_steps,
                               "chunk": report.chunk}, _score(report))
            append_jsonl(timings, {"event": "checkpoint", "update": report.updates_done,
                                   "seconds": round(time.perf_counter() - start, 4)})

    start = time.perf_counter()
    try:
        result = population.run(
            algo, members, seed=config.seed, updates_per_chunk=built.updates_per_chunk,
            eval_every_chunks=built.eval_every_chunks, on_chunk=on_chunk, on_start=on_start,
            restore=restore, after_chunk=after_chunk,
            population=make_population(config, built, devices))
    finally:
        bar.close()
        checkpointer.close()
        for logger in loggers:
            logger.close()
    wall = time.perf_counter() - start
    append_jsonl(timings, {"event": "end", "compile_seconds": round(result.compile_seconds, 3),
                           "steady_sps": round(result.steady_sps, 1), "wall_seconds": round(wall, 3)})

    final = result.final_eval_returns.mean(axis=1)
    summary = {
        "env": config.env.id, "algo": config.algo.name, "seeds": members,
        "total_env_steps_per_seed": result.reports[-1].env_steps,
        "final_eval": {"episodes_per_seed": config.eval.episodes,
                       "deterministic": config.eval.deterministic,
                       "per_seed": [round(float(x), 3) for x in final], **aggregate(final)},
        "steady_sps": result.steady_sps, "compile_seconds": result.compile_seconds,
        "wall_seconds": wall, "devices": result.num_devices, "versions": environment_versions(),
    }
    write_json(run_dir / "summary.json", summary)
    steps, returns = _curve_from_csv(metrics_path, members)
    learning_curve(steps, returns, run_dir / "plots" / "learning_curve.png",
                   title=f"{config.algo.name.upper()} on {config.env.id} ({members} seeds)")
    summary["run_dir"] = str(run_dir)
    return summary


def interrupted(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a run that stopped before its end and left a checkpoint."""
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    return ((run_dir / "config.yaml").is_file() and not (run_dir / "summary.json").exists()
            and checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()))


def resume_config(run_dir: str | Path, overrides: Sequence[str] = (),
                  requested: Config | None = None) -> Config:
    """The config to continue `run_dir` with: its own, plus overrides that leave the saved
    state valid (eval.*, checkpoint.*). Anything else is refused, naming the keys."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a jaxrl run folder (it has no config.yaml); "
                          f"--resume takes the folder of an earlier `jaxrl train`")
    if (run_dir / "summary.json").exists():
        raise RunDirError(f"the run in {run_dir} already finished (it has summary.json); "
                          f"nothing to resume. Train again with another --run-dir")
    if not interrupted(run_dir):
        raise CheckpointError(f"the run in {run_dir} stopped before its first checkpoint; "
                              f"nothing to resume. Train again with another --run-dir")
    saved = config_lib.load(run_dir / "config.yaml")
    config = requested if requested is not None else config_lib.load(run_dir / "config.yaml", overrides)
    changed = config_lib.state_breaking_changes(saved, config)
    if changed:
        raise ConfigError(f"cannot resume {run_dir}: the config differs from the run's in "
                          f"{', '.join(changed)}; only eval.*, checkpoint.*, loggers, wandb.*, env.num_workers and env.step_timeout may change. "
                          f"Start a new run with another --run-dir")
    if config != saved:
        (run_dir / "config.yaml").write_text(dump(config))
    return config


def format_summary(summary: dict[str, Any]) -> str:
    """The short final table the CLI prints."""
    ev = summary["final_eval"]
    lines = [
        f"final greedy evaluation over {summary['seeds']} seeds "
        f"({ev['episodes_per_seed']} episodes each, {summary['total_env_steps_per_seed']:,} env steps/seed):",
        f"  mean {ev['mean']:.1f}   std {ev['std']:.1f}   "
        f"IQM {ev['iqm']:.1f} [95% CI {ev['iqm_ci_low']:.1f}, {ev['iqm_ci_high']:.1f}]   "
        f"min {ev['min']:.1f}   max {ev['max']:.1f}",
        f"  steady {summary['steady_sps']:,.0f} env steps/s on {summary['devices']} "
        f"{summary['versions']['platform']} device(s); compile {summary['compile_seconds']:.1f} s; "
        f"wall {summary['wall_seconds']:.1f} s",
        f"run folder: {summary['run_dir']}",
    ]
    return "\n".join(lines)
