"""PPO on a brax env (ant by default): steady SPS and compile time against population size.

Every row runs in a fresh subprocess (this file with `--worker`), with the machinery of
`ppo_throughput.py`. Rows start from `configs/ppo_brax_ant.yaml` with the population size,
envs per seed, backend and budget given here, so the population axis is the only change.

    python benchmarks/brax_throughput.py --seeds 1 4 16 --num-envs 16 --steps 20480
    python benchmarks/brax_throughput.py --seeds 1 8 32 --num-envs 256 --steps 2000000 \
        --out benchmarks/results/gpu-h200        # on a GPU

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ppo_throughput as common  # noqa: E402  (shared subprocess and report machinery)

REPO = HERE.parent
CONFIG = REPO / "configs" / "ppo_brax_ant.yaml"


def overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides shared by every row: the env, its copies per seed, backend, rollout."""
    return [f"env.id=brax/{args.env}", f"env.num_envs={args.num_envs}",
            f"env.kwargs.backend={args.backend}", f"algo.num_steps={args.num_steps}",
            f"algo.num_minibatches={args.num_minibatches}", "eval.every_env_steps=0",
            f"eval.episodes={args.eval_episodes}", f"log_every_env_steps={args.log_every}"]


def run_worker(args: argparse.Namespace) -> None:
    """Measures one population size in this process and prints one JSON result line."""
    common._disable_compilation_cache()
    result = common.measure_jaxrl(args.worker_seeds, args.worker_steps, CONFIG, overrides(args))
    result.update(common._device_info())
    result["peak_rss_mib"] = common._peak_rss_mib()
    print(common.RESULT_PREFIX + json.dumps(result), flush=True)


def shared_args(args: argparse.Namespace) -> list[str]:
    """The options a worker needs to rebuild the same overrides."""
    return ["--env", args.env, "--num-envs", str(args.num_envs), "--backend", args.backend,
            "--num-steps", str(args.num_steps), "--num-minibatches", str(args.num_minibatches),
            "--eval-episodes", str(args.eval_episodes), "--log-every", str(args.log_every)]


def render_markdown(machine: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in {**machine["versions"],
                                                    "brax": common.package_version("brax")}.items())
    lines = [
        f"# PPO on brax {args.env} ({args.backend} backend): throughput against population size", "",
        f"- machine: {machine['cpu_model']}, {machine['cpu_count']} cores; date {machine['date']}",
        f"- versions: {versions}; Python {machine['python']}",
        f"- `{CONFIG.relative_to(REPO)}` with " + " ".join(f"`{o}`" for o in overrides(args))
        + f"; {args.steps:,} env steps per seed", "",
        "| seeds | envs per seed | devices | platform | compile s | steady SPS (all seeds) "
        "| SPS per seed | peak RSS MiB | final greedy return (mean / min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"| {row['seeds']} | {args.num_envs} | – | – | – | – | – | – "
                         f"| {row.get('status')}: {row.get('error', '')[:160]} |")
            continue
        final = row["final_return"]
        lines.append(f"| {row['seeds']} | {args.num_envs} | {row['devices_used']} | {row['platform']} "
                     f"| {row['compile_seconds']:.1f} | {row['steady_sps']:,.0f} "
                     f"| {row['steady_sps'] / row['seeds']:,.0f} | {row['peak_rss_mib']:,.0f} "
                     f"| {final['mean']:.1f} / {final['min']:.1f} |")
    lines += ["", "Compile s covers init, the training chunk and the evaluator (no persistent cache); "
              "steady SPS excludes compile, the first chunk and evaluation. Budgets this short "
              "measure speed, not learning."]
    return "\n".join(lines) + "\n"


def run_benchmark(args: argparse.Namespace) -> None:
    machine = common.machine_info()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"brax_{args.env}_throughput"
    rows = []
    for num_seeds in args.seeds:
        print(f"[{time.strftime('%H:%M:%S')}] {num_seeds} seeds x {args.num_envs} envs x "
              f"{args.steps:,} steps ...", file=sys.stderr, flush=True)
        rows.append(common.measure_in_subprocess("jaxrl", num_seeds, args.steps, args.timeout,
                                                 __file__, shared_args(args)))
        print(f"    {common._brief(rows[-1])}", file=sys.stderr, flush=True)
        (out_dir / f"{name}.md").write_text(render_markdown(machine, args, rows))
        (out_dir / f"{name}.json").write_text(json.dumps(
            {"machine": machine, "args": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
             "rows": rows}, indent=2))
    print(render_markdown(machine, args, rows))
    print(f"wrote {out_dir / (name + '.md')} and {out_dir / (name + '.json')}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ant", help="a brax env name (default ant)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16], help="population sizes")
    parser.add_argument("--num-envs", type=int, default=16, help="env copies per seed")
    parser.add_argument("--backend", default="mjx", help="brax backend")
    parser.add_argument("--steps", type=int, default=20_480, help="env steps per seed")
    parser.add_argument("--num-steps", type=int, default=32, help="rollout length per update")
    parser.add_argument("--num-minibatches", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=2048, help="env steps per seed per chunk")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per row")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu-2core"))
    parser.add_argument("--worker", choices=["jaxrl"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-seeds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-steps", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
