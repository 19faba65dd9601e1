"""DQN / Rainbow CartPole-v1 throughput: jaxrl vs a PureJaxRL-style single-file DQN, and the
cost of each Rainbow part.

Every row runs in a fresh subprocess (this file with `--worker`), as in `ppo_throughput.py`,
whose machinery this script reuses. All jaxrl rows start from
`configs/dqn_cartpole_reference.yaml` (the reference's exact settings) and switch parts on
with config overrides, so the only difference between rows is the part itself.

    python benchmarks/dqn_throughput.py --seeds 1 16 64 256 --systems dqn rainbow reference
    python benchmarks/dqn_throughput.py --parts --seeds 16      # cost of each Rainbow part

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
CONFIG = REPO / "configs" / "dqn_cartpole_reference.yaml"
# C51 needs a support that covers CartPole's discounted returns (at most 100 with gamma 0.99).
C51_SUPPORT = ["algo.v_min=0.0", "algo.v_max=100.0"]
JAXRL_SYSTEMS: dict[str, list[str]] = {
    "dqn": [],
    "rainbow": ["algo.rainbow=true", *C51_SUPPORT],
    "dqn+double": ["algo.double=true"],
    "dqn+dueling": ["algo.dueling=true"],
    "dqn+per": ["algo.prioritized=true"],
    "dqn+n_steps3": ["algo.n_steps=3"],
    "dqn+c51": ["algo.distributional=true", *C51_SUPPORT],
    "dqn+noisy": ["algo.noisy=true"],
}
PARTS = [name for name in JAXRL_SYSTEMS if name.startswith("dqn+")]
SYSTEMS = (*JAXRL_SYSTEMS, "reference")


def run_worker(system: str, num_seeds: int, steps: int) -> None:
    """Measures one (system, population size) in this process and prints one JSON result line."""
    common._disable_compilation_cache()
    if system == "reference":
        result = common.measure_reference(num_seeds, steps, "reference_dqn")
    else:
        result = common.measure_jaxrl(num_seeds, steps, CONFIG, JAXRL_SYSTEMS[system])
    result.update(common._device_info())
    result["peak_rss_mib"] = common._peak_rss_mib()
    print(common.RESULT_PREFIX + json.dumps(result), flush=True)


def _learning(row: dict[str, Any]) -> str:
    final = row["final_return"]
    return f"{row['return_kind']} mean {final['mean']:.1f}, min {final['min']:.1f}"


def _ratio(row: dict[str, Any], rows: list[dict[str, Any]], baseline: str) -> str:
    for other in rows:
        if (other["system"] == baseline and other["seeds"] == row["seeds"] and other.get("status") == "ok"
                and row.get("status") == "ok" and other is not row):
            return f"{row['steady_sps'] / other['steady_sps']:.2f}×"
    return "–"


def render_markdown(machine: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    title = ("cost of each Rainbow part" if args.parts
             else "jaxrl vs a PureJaxRL-style single-file DQN")
    lines = [
        f"# DQN CartPole-v1 throughput: {title}", "",
        f"- machine: {machine['cpu_model']}, {machine['cpu_count']} cores; date {machine['date']}",
        f"- versions: {versions}; Python {machine['python']}",
        "- budget (env steps per seed): " + ", ".join(
            f"{n} seeds {budget(n, args):,}" for n in args.seeds)
        + f"; {args.repeats} fresh subprocess(es) per row, timings are medians. Final returns "
        "compare within a population size; smaller budgets learn less",
        "- settings: the reference's (10 envs, buffer 1e4, batch 128, 1 gradient step per 10 env "
        "steps, target copy every 500 steps, 120-84 ReLU); jaxrl rows: "
        f"`{CONFIG.relative_to(REPO)}` plus the overrides named in the first column "
        "(C51 rows use v_min 0, v_max 100; reference: `benchmarks/reference_dqn.py`)", "",
        "| system | overrides | seeds | devices | env steps / seed | compile s | steady SPS (all seeds) "
        "| vs reference | vs plain jaxrl DQN | peak RSS MiB | final return |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        overrides = " ".join(f"`{o}`" for o in JAXRL_SYSTEMS.get(row["system"], [])) or "–"
        if row.get("status") != "ok":
            lines.append(f"| {row['system']} | {overrides} | {row['seeds']} | – | – | – | – | – | – | – "
                         f"| {row.get('status')}: {row.get('error', '')[:120]} |")
            continue
        lines.append(
            f"| {row['system']} | {overrides} | {row['seeds']} | {row['devices_used']} "
            f"| {row['env_steps_per_seed']:,} | {row['compile_seconds']:.1f} | {row['steady_sps']:,.0f} "
            f"| {_ratio(row, rows, 'reference') if row['system'] != 'reference' else '–'} "
            f"| {_ratio(row, rows, 'dqn') if row['system'] not in ('dqn', 'reference') else '–'} "
            f"| {row['peak_rss_mib']:,.0f} | {_learning(row)} |")
    lines += ["", "jaxrl: `population.run` with `jaxrl train`'s CPU defaults (one device per core, Eigen "
              "threads off); compile s covers init, the training chunk and the evaluator; steady SPS "
              "excludes compile, the first chunk and evaluation; final return is the greedy evaluation "
              "(10 episodes per seed) after training. Reference: `jax.jit(jax.vmap(make_train(config)))` "
              "on one device, compile timed by `lower().compile()`, steady SPS over the whole compiled "
              "run, final return the mean training return over the last 5% of steps."]
    return "\n".join(lines) + "\n"


def parse_budgets(pairs: Sequence[str]) -> dict[int, int]:
    """`["64:100000", ...]` -> {64: 100000}: per-population env steps per seed."""
    budgets = {}
    for pair in pairs:
        seeds, _, steps = pair.partition(":")
        if not (seeds.isdigit() and steps.isdigit()):
            raise SystemExit(f"--budgets takes SEEDS:STEPS pairs such as 64:100000, got {pair!r}")
        budgets[int(seeds)] = int(steps)
    return budgets


def budget(num_seeds: int, args: argparse.Namespace) -> int:
    """Env steps per seed for one population size: `--budgets` first, else `--steps` (cut by
    `--steps-for-256` for populations of 256 or more)."""
    return parse_budgets(args.budgets).get(
        num_seeds, common.steps_for(num_seeds, args.steps, args.steps_for_256))


def run_benchmark(args: argparse.Namespace) -> None:
    """Measures every requested (system, seeds) pair, interleaved, rewriting outputs after each row."""
    machine = common.machine_info()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "dqn_rainbow_parts" if args.parts else "dqn_cartpole_throughput"
    systems = ["dqn", *PARTS, "rainbow"] if args.parts else args.systems
    rows, raw = [], []
    for num_seeds in args.seeds:
        steps = budget(num_seeds, args)
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        for repeat in range(args.repeats):
            for system in systems:
                print(f"[{time.strftime('%H:%M:%S')}] {system}: {num_seeds} seeds x {steps:,} steps "
                      f"(repeat {repeat + 1}/{args.repeats}) ...", file=sys.stderr, flush=True)
                record = common.measure_in_subprocess(system, num_seeds, steps, args.timeout, __file__)
                record["repeat"] = repeat
                runs[system].append(record)
                raw.append(record)
                print(f"    {common._brief(record)}", file=sys.stderr, flush=True)
        rows += [common.combine_repeats(runs[s]) for s in systems]
        markdown = render_markdown(machine, args, rows)
        (out_dir / f"{name}.md").write_text(markdown)
        payload = {"machine": machine, "args": {k: v for k, v in vars(args).items()
                                                if not k.startswith("worker")}, "rows": rows, "runs": raw}
        (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2))
    print(markdown)
    print(f"wrote {out_dir / (name + '.md')} and {out_dir / (name + '.json')}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 16, 64, 256], help="population sizes")
    parser.add_argument("--steps", type=int, default=500_000, help="env steps per seed")
    parser.add_argument("--steps-for-256", type=int, default=100_000,
                        help="env steps per seed for populations of 256 or more")
    parser.add_argument("--budgets", nargs="+", default=[], metavar="SEEDS:STEPS",
                        help="per-population budgets, e.g. 64:100000 256:50000 (override --steps)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=["dqn", "rainbow", "reference"])
    parser.add_argument("--parts", action="store_true",
                        help="measure plain DQN, each Rainbow part alone, and all of them")
    parser.add_argument("--repeats", type=int, default=1, help="fresh subprocesses per row (median reported)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per measurement")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu-2core"))
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-seeds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-steps", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.worker_seeds, args.worker_steps)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
