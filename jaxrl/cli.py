"""`jaxrl train | sweep | eval | plot | export | envs | bench`: argument parsing and error reporting only; the work lives elsewhere."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from jaxrl.runtime import enable_compilation_cache as _enable_compilation_cache


class _UsageError(Exception):
    """A command line argparse cannot read; `main` prints it as one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the problem and --help, not the usage block."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message}; see {self.prog} --help")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxrl", description="Train populations of RL agents in one compiled JAX program.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands)
    _add_sweep(commands)
    _add_eval(commands)
    _add_plot(commands)
    commands.add_parser("envs", help="list the env ids that `env.id` accepts")
    _add_bench(commands)
    _add_export(commands)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a population from a YAML config")
    train.add_argument("config", nargs="?",
                       help="a YAML config file, or a shipped config's name (e.g. ppo_cartpole)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides such as algo.lr=1e-3 env.num_envs=8")
    train.add_argument("--seeds", type=int, help="population size (overrides `seeds`)")
    train.add_argument("--seed", type=int, help="base seed (overrides `seed`)")
    train.add_argument("--run-dir", help="run folder to create (default runs/<config>-<time>); "
                                         "an interrupted run there is resumed")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue an interrupted run from its newest checkpoint")
    train.add_argument("--devices", type=int,
                       help="devices to shard the population over (default: all; on a CPU-only "
                            "machine, one CPU device per core)")
    train.add_argument("--max-population-chunk", type=int, metavar="N",
                       help="at most N members per compiled call; a larger population runs as "
                            "sub-populations one after another (default: as many as fit in memory)")
    train.add_argument("--memory-limit", metavar="SIZE",
                       help="plan the population for this much device memory (e.g. 512MiB, 8GiB) "
                            "instead of what the devices report")
    train.add_argument("--distributed", action="store_true",
                       help="train one population over several processes/machines with "
                            "jax.distributed (cluster detected on SLURM, Open MPI, Kubernetes)")
    train.add_argument("--coordinator", metavar="HOST:PORT",
                       help="with --distributed by hand: process 0's address, the same for all")
    train.add_argument("--num-processes", type=int, help="with --distributed by hand: how many processes")
    train.add_argument("--process-id", type=int, help="with --distributed by hand: this process, 0..N-1")
    train.add_argument("--distributed-timeout", type=float, default=120.0, metavar="SECONDS",
                       help="how long to wait for the coordinator and the other processes (default 120)")
    train.add_argument("--compilation-cache", metavar="DIR",
                       help="persistent compilation cache folder (default $JAXRL_COMPILATION_CACHE or "
                            "~/.cache/jaxrl/xla; 'off' disables it): a second run of a config skips compiling")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")



def _add_sweep(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser(
        "sweep", help="Optuna search over a config's search: space, trials batched into populations")
    search.add_argument("config", help="a YAML config (file or shipped name) with a search: section, "
                                       "e.g. ppo_cartpole_search")
    search.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    search.add_argument("--trials", type=int, required=True, help="trials in all (a continued sweep counts its earlier ones)")
    search.add_argument("--batch", type=int,
                        help="trials trained together as one population (default min(16, trials))")
    search.add_argument("--seeds", type=int, help="seeds per trial (overrides `seeds`)")
    search.add_argument("--run-dir", help="sweep folder (default runs/<config>-sweep-<time>); running the "
                                          "same command on it again continues an interrupted sweep")
    search.add_argument("--storage", help="Optuna storage URL (default sqlite:///RUN_DIR/study.db)")
    search.add_argument("--devices", type=int, help="devices to shard each batch over (default: all)")
    search.add_argument("--memory-limit", metavar="SIZE", help="as for jaxrl train")
    search.add_argument("--compilation-cache", metavar="DIR", help="as for jaxrl train")
    search.add_argument("--no-progress", action="store_true", help="no progress bars")



def _add_eval(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a trained run from its checkpoint")
    evaluate.add_argument("run_dir", help="a run folder written by `jaxrl train`")
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--seed-index", type=int, help="report one member")
    which.add_argument("--all", action="store_true", help="report every member (default)")
    evaluate.add_argument("--episodes", type=int, help="episodes per member (default: the run's)")
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=None,
                      help="greedy actions (default: the run's eval.deterministic)")
    mode.add_argument("--stochastic", dest="deterministic", action="store_false",
                      help="sample actions from the policy")
    evaluate.add_argument("--devices", type=int, help="devices to shard the population over")
    evaluate.add_argument("--trace", action="store_true",
                          help="print one episode of one member (--seed-index, default 0) step "
                               "by step: observation, action, reward, action probabilities")
    evaluate.add_argument("--max-steps", type=int, default=1000,
                          help="cut --trace and --video episodes after this many steps (default 1000)")
    evaluate.add_argument("--video", action="store_true",
                          help="play one episode per member (or --seed-index) and write the best "
                               "as a GIF to RUN_DIR/videos/")



def _add_plot(commands: argparse._SubParsersAction) -> None:
    plot = commands.add_parser("plot", help="compare runs: learning curves and final IQMs with CIs")
    plot.add_argument("run_dirs", nargs="+", help="run folders written by `jaxrl train`")
    plot.add_argument("--metric", default="episode_return", help="a metrics.csv column (default episode_return)")
    plot.add_argument("--labels", nargs="+", help="a name per run (default: folder names)")
    plot.add_argument("--out", default="comparison.png",
                      help="figure to write (.png, .pdf or .svg); <out>.csv and <out>_final.csv go beside it")
    plot.add_argument("--grpo-groups", action="store_true",
                      help="the runs are a GRPO group-size sweep: per env, curves for each G "
                           "and the final return against G")



def _add_bench(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="benchmark suites: throughput, peers (reference, rejax, SB3, sbx), quality vs references, "
                      "rainbow parts, scale, checkpoint, host envs, sweep, search")
    bench.add_argument("suite", help="throughput | peers | quality | rainbow | scale | checkpoint | host | sweep | search")
    bench.add_argument("--budget", default="quick",
                       help="tiny (a smoke test), quick (minutes, default) or full (the committed figures)")
    bench.add_argument("--out", help="results folder (default benchmarks/results/<machine kind>/)")
    bench.add_argument("--repeats", type=int, help="fresh processes per row, medians reported "
                                                   "(default 1; 3 for --budget full)")
    bench.add_argument("--only", nargs="+", metavar="ROW", default=(),
                       help="measure only these rows (workload or row ids, listed in the suite's table)")
    bench.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per measurement")
    bench.add_argument("--reuse", metavar="DIR",
                       help="quality: take rows from earlier runs' summary.json files named <row id>.json in DIR")
    bench.add_argument("--merge", action="store_true",
                       help="throughput: measure only --only rows again and keep the other rows of the "
                            "report already in the results folder")
    bench.add_argument("--max-cpu-hours", type=float,
                       help="quality on CPU: run rows estimated to take up to this many hours "
                            "(default 0.25 for full)")



def _add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="export one member's network to PyTorch "
                                                "(TorchScript; needs the torch extra)")
    export.add_argument("run_dir", help="a run folder written by `jaxrl train`")
    export.add_argument("--seed-index", type=int, default=0, help="the member to export (default 0)")
    export.add_argument("--out", help="file to write (default RUN_DIR/export/seed<i>.pt)")
    export.add_argument("--force", action="store_true", help="replace the --out file if it exists")



def _quiet_libraries() -> None:
    """orbax logs routine notes (read-only restores) through absl at WARNING level."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    warnings.formatwarning = _one_line_warning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """A warning as one line (Python's default adds the source line that raised it)."""
    return f"{category.__name__}: {' '.join(str(message).split())}\n"


SIZE_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
              "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def parse_size(text: str) -> int:
    """`512MiB`, `8GiB`, `2e9` -> bytes; a ConfigError naming the accepted forms otherwise."""
    import re

    from jaxrl.errors import ConfigError

    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    try:
        value = float(match.group(1)) * SIZE_UNITS[unit] if match else None
    except (KeyError, ValueError):
        value = None
    if value is None or value <= 0:
        raise ConfigError(f"--memory-limit {text!r} is not a size; use e.g. 512MiB, 8GiB or a byte count")
    return int(value)


def _train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    for flag, key in ((args.seeds, "seeds"), (args.seed, "seed")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.devices is not None and args.devices < 1:
        from jaxrl.errors import ConfigError

        raise ConfigError(f"--devices must be at least 1, got {args.devices}")
    from jaxrl.errors import ConfigError

    by_hand = (args.coordinator, args.num_processes, args.process_id)
    if any(x is not None for x in by_hand) and not args.distributed:
        raise ConfigError("--coordinator, --num-processes and --process-id need --distributed")
    if args.distributed:  # before anything of ours can touch a device
        from jaxrl import distributed

        if args.devices:
            raise ConfigError("--devices cannot be combined with --distributed: the population "
                              "spans every device of every process")
        distributed.initialize(*by_hand, timeout=args.distributed_timeout)
    from jaxrl import config as config_lib
    from jaxrl.experiment.run_dir import default_run_dir
    from jaxrl.experiment.train import format_summary, lock_run_folder, open_run, train

    if args.resume:
        if args.config or args.run_dir:
            raise ConfigError("--resume RUN_DIR takes the config from the run folder; "
                              "give neither a config file nor --run-dir with it")
        run_dir, requested = Path(args.resume), None
    else:
        if not args.config:
            raise ConfigError("jaxrl train needs a config: a YAML file or a shipped name such as "
                              "ppo_cartpole (or --resume RUN_DIR)")
        requested = config_lib.load(args.config, overrides)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.config)
    if args.max_population_chunk is not None and args.max_population_chunk < 1:
        raise ConfigError(f"--max-population-chunk must be at least 1, got {args.max_population_chunk}")
    memory_limit = parse_size(args.memory_limit) if args.memory_limit is not None else None
    _enable_compilation_cache(args.compilation_cache)
    devices = _devices(args.devices)
    with lock_run_folder(run_dir):  # a second process on this folder is refused from here on
        config, resume = open_run(run_dir, requested, overrides, resume=bool(args.resume))
        summary = train(config, run_dir, progress=not args.no_progress, devices=devices, resume=resume,
                        max_members_per_call=args.max_population_chunk, memory_limit=memory_limit)
    print(format_summary(summary))
    return 0


def _devices(count: int | None) -> list | None:
    """The first `count` devices (None: all), refusing more than exist."""
    import jax

    from jaxrl.errors import ConfigError

    if count is None:
        return None
    if count < 1:
        raise ConfigError(f"--devices must be at least 1, got {count}")
    if count > jax.device_count():
        raise ConfigError(f"--devices {count} asks for more devices than the {jax.device_count()} "
                          f"{jax.default_backend()} device(s) found")
    return jax.devices()[:count]


def _sweep(args: argparse.Namespace) -> int:
    from jaxrl import config as config_lib
    from jaxrl.experiment.run_dir import default_run_dir
    from jaxrl.experiment.tune import format_sweep, require_optuna, sweep

    require_optuna()
    overrides = list(args.overrides) + ([f"seeds={args.seeds}"] if args.seeds is not None else [])
    config = config_lib.load(args.config, overrides)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(f"{Path(args.config).stem}-sweep")
    _enable_compilation_cache(args.compilation_cache)
    summary = sweep(config, run_dir, trials=args.trials, batch=args.batch, storage=args.storage,
                    progress=not args.no_progress, devices=_devices(args.devices),
                    memory_limit=parse_size(args.memory_limit) if args.memory_limit is not None else None)
    print(format_sweep(summary))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from jaxrl.config import LIMITS
    from jaxrl.errors import ConfigError

    for flag, value, key in (("--episodes", args.episodes, "eval.episodes"),
                             ("--max-steps", args.max_steps, "eval.max_steps")):
        if value is not None and not 1 <= value <= LIMITS[key]:
            raise ConfigError(f"{flag} must lie between 1 and {LIMITS[key]:,}, got {value}")
    _enable_compilation_cache()
    devices = _devices(args.devices)
    from jaxrl.experiment.evaluate import (
        evaluate_run, format_evaluation, format_trace, record_videos, trace_episode,
    )

    if args.video:
        print(f"video: {record_videos(args.run_dir, seed_index=args.seed_index, deterministic=args.deterministic, max_steps=args.max_steps)}")
    if args.trace:
        print(format_trace(trace_episode(args.run_dir, seed_index=args.seed_index or 0,
                                         deterministic=args.deterministic, max_steps=args.max_steps)))
        return 0
    result = evaluate_run(args.run_dir, episodes=args.episodes, deterministic=args.deterministic,
                          seed_index=args.seed_index, devices=devices)
    print(format_evaluation(result))
    return 0


def _plot(args: argparse.Namespace) -> int:
    if args.grpo_groups:
        from jaxrl.analysis.group_sweep import plot_group_sweep

        written = plot_group_sweep(args.run_dirs, args.out, args.metric)
    else:
        from jaxrl.analysis.compare import compare_runs

        written = compare_runs(args.run_dirs, args.out, args.metric, args.labels)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from jaxrl.interop import check_writable, export_run, save

    out = Path(args.out) if args.out else Path(args.run_dir) / "export" / f"seed{args.seed_index}.pt"
    check_writable(out, overwrite=args.force)  # before the slow part
    written = save(export_run(args.run_dir, args.seed_index), out, overwrite=args.force)
    print(f"exported seed {args.seed_index} of {args.run_dir} to {written} (load it with torch.jit.load)")
    return 0


def _envs() -> int:
    from jaxrl.envs import registered_ids

    print("\n".join(registered_ids()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from jaxrl.bench import run_suite
    from jaxrl.errors import ConfigError

    options: dict = {}
    if args.suite == "quality":
        options = {"reuse": Path(args.reuse) if args.reuse else None, "max_cpu_hours": args.max_cpu_hours}
    elif args.reuse or args.max_cpu_hours is not None:
        raise ConfigError("--reuse and --max-cpu-hours apply to the quality suite only")
    if args.merge:
        if args.suite != "throughput" or not args.only:
            raise ConfigError("--merge applies to the throughput suite with --only ROW ...")
        options["merge"] = True
    if args.reuse and not Path(args.reuse).is_dir():
        raise ConfigError(f"--reuse {args.reuse}: no such folder")
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")
    written = run_suite(args.suite, args.budget, args.out, args.repeats, args.timeout, args.only, **options)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _take_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Words after options: KEY=VALUE overrides of train and sweep (a bare word there is an
    override without `=`, which config loading names); anything else is a usage error."""
    import difflib

    takes_overrides = args.command in ("train", "sweep")
    unknown = [x for x in extra if x.startswith("-") or not takes_overrides]
    if unknown:
        command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub = command.choices[args.command]
        options = [o for action in sub._actions for o in action.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1)
        hint = f" (did you mean {close[0]}?)" if unknown[0].startswith("--") and close else ""
        sub.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if args.command == "train" and args.config and "=" in args.config and not Path(args.config).exists():
        args.overrides = [args.config] + list(args.overrides)  # `--resume DIR key=value`
        args.config = None
    if takes_overrides:
        args.overrides = list(args.overrides) + extra


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)  # overrides may come after options too
        _take_overrides(parser, args, extra)
    except _UsageError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command in ("train", "sweep"):
        from jaxrl.runtime import cpu_defaults

        cpu_defaults(args.devices if args.devices and args.devices > 0 else None)
    elif args.command == "eval":  # evaluation gains nothing from more CPU devices than cores
        from jaxrl.runtime import cpu_defaults

        cpu_defaults()
    from jaxrl.errors import JaxrlError
    from jaxrl.runtime import catch_interrupts

    catch_interrupts()
    _quiet_libraries()
    try:
        return {"train": _train, "sweep": _sweep, "eval": _eval, "plot": _plot, "export": _export,
                "bench": _bench, "envs": lambda _: _envs()}[args.command](args)
    except JaxrlError as error:
        print(f"jaxrl: error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, always
        return 2
    except KeyboardInterrupt:
        print("jaxrl: interrupted; the same command again continues the run from its last checkpoint (or starts it "
              "over if it had none; also: jaxrl train --resume RUN_DIR)", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The `jaxrl` command: `main`, then exit. After Ctrl-C the process ends at once (every
    run file is closed by then): interrupted mid-compile, XLA's compiler threads may still be
    running, and tearing the interpreter down under them crashes (a segfault instead of 130)."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
