"""`jaxrl bench throughput | quality`: the pieces that decide budgets, marks and medians, and a
real tiny-budget run of each suite through the CLI producing well-formed tables and plots; bad
arguments to any suite (tests/test_bench_suites.py runs the other suites)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrl.bench import common, quality, throughput

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """`jaxrl bench ...` as a user runs it, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "jaxrl", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "JAXRL_COMPILATION_CACHE": "off"})


def _table(markdown: str) -> list[list[str]]:
    """The data rows of the report's first Markdown table, as cells."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert set(lines[1].replace("|", "")) <= {"-"}, "second table line is the header rule"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_median_of_repeats_takes_medians_ranges_and_largest_peaks():
    runs = [{"status": "ok", "steady_sps": 100.0, "compile_seconds": 3.0, "peak_rss_mib": 700.0},
            {"status": "ok", "steady_sps": 300.0, "compile_seconds": 1.0, "peak_rss_mib": 900.0},
            {"status": "ok", "steady_sps": 200.0, "compile_seconds": 2.0, "peak_rss_mib": 800.0},
            {"status": "timeout"}]
    row = common.median_of(runs)
    assert (row["steady_sps"], row["compile_seconds"]) == (200.0, 2.0)
    assert row["steady_sps_range"] == [100.0, 300.0]
    assert row["peak_rss_mib"] == 900.0 and row["repeats"] == 3
    assert common.median_of([{"status": "error", "error": "x"}])["repeats"] == 0


def test_machine_kind_names_the_results_folder():
    assert common.machine_kind("cpu", "cpu", cores=2) == "cpu-2core"
    assert common.machine_kind("gpu", "NVIDIA H200") == "gpu-nvidia-h200"


def test_row_budgets_share_the_population_budget_within_bounds():
    workload = throughput.Workload("w", "A", "E", "c.yaml", population_steps=1_000_000,
                                   max_steps_per_seed=200_000, min_steps_per_seed=20_000)
    assert throughput.steps_per_seed(workload, 1, "full", "cpu") == 200_000  # capped per seed
    assert throughput.steps_per_seed(workload, 16, "full", "cpu") == 62_500  # 1e6 / 16
    assert throughput.steps_per_seed(workload, 256, "full", "cpu") == 20_000  # floor per seed
    assert throughput.steps_per_seed(workload, 16, "quick", "cpu") == 20_000  # a quarter, floored
    assert throughput.steps_per_seed(workload, 64, "full", "gpu") == 200_000  # 30x the budget, capped
    assert throughput.steps_per_seed(workload, 2, "tiny", "cpu") == min(throughput.TINY_STEPS, 20_000)
    host = throughput.Workload("h", "A", "E", "c.yaml", kind="host")
    assert throughput.sizes_for(host, "full", "cpu") == [1, 16, 64]  # the issue asks host rows at 64 seeds too
    assert throughput.sizes_for(host, "full", "gpu") == [1, 64]


def test_rows_come_in_suite_order_and_merge_keeps_only_the_same_kind_of_report(tmp_path):
    def run(workload, seeds, sps):
        return {"workload": workload, "seeds": seeds, "status": "ok", "steady_sps": sps, "compile_seconds": 1.0,
                "peak_rss_mib": 1.0}

    runs = [run("dqn-cartpole", 16, 5.0), run("ppo-cartpole", 16, 3.0), run("ppo-cartpole", 1, 1.0),
            run("ppo-cartpole", 16, 4.0)]
    rows = throughput.rows_of(runs)
    assert [(w.name, row["seeds"], row["steady_sps"]) for w, row in rows] == [
        ("ppo-cartpole", 1, 1.0), ("ppo-cartpole", 16, 3.5), ("dqn-cartpole", 16, 5.0)]
    machine, budget = {"kind": "cpu-2core"}, common.Budget("full", 1)
    (tmp_path / "throughput.json").write_text(json.dumps({"machine": machine, "budget": budget._asdict(), "runs": runs}))
    assert throughput.earlier_runs(tmp_path, machine, budget) == runs
    assert throughput.earlier_runs(tmp_path, {"kind": "gpu-nvidia-h200"}, budget) == []
    assert throughput.earlier_runs(tmp_path, machine, common.Budget("quick", 1)) == []


def test_every_workload_and_quality_row_names_a_shipped_config():
    configs = {path.name for path in (REPO / "configs").glob("*.yaml")}
    assert {w.config for w in throughput.WORKLOADS} <= configs
    assert {row.config for row in quality.ROWS if row.config} <= configs
    ids = [row.id for row in quality.ROWS]
    assert len(ids) == len(set(ids))


def test_quality_marks():
    row = quality.QualityRow("r", "T", "A", "c.yaml", 100, 4, quality.Reference("490 ± 6", 490.0, "src"), 0.1)
    assert quality.mark(row, 495.0, 500.0) == "pass"
    assert quality.mark(row, 480.0, 492.0) == "within CI"
    assert quality.mark(row, 400.0, 450.0) == "short"
    assert quality.mark(row._replace(reference=None), 400.0, 450.0) == "–"


def test_quality_reuses_an_earlier_run_only_on_the_rows_budget(tmp_path):
    row = next(r for r in quality.ROWS if r.id == "ppo-pendulum")
    summary = {"seeds": row.seeds, "total_env_steps_per_seed": row.steps - 512, "steady_sps": 1.0,
               "final_eval": {"iqm": -150.0, "iqm_ci_low": -160.0, "iqm_ci_high": -140.0}}
    (tmp_path / "ppo_pendulum.json").write_text(json.dumps(summary))
    assert quality.reusable(row, tmp_path) == tmp_path / "ppo_pendulum.json"
    assert quality.plan(row, "cpu", tmp_path, 0.0) == ("reuse", str(tmp_path / "ppo_pendulum.json"))
    (tmp_path / "ppo_pendulum.json").write_text(json.dumps({**summary, "seeds": row.seeds // 2}))
    assert quality.reusable(row, tmp_path) is None  # other seeds: not the row's figure
    action, why = quality.plan(row, "cpu", tmp_path, 0.0)
    assert action == "skip" and "h on the 2-core CPU" in why
    assert quality.plan(row, "gpu", None, 0.0) == ("run", "")
    missing = next(r for r in quality.ROWS if r.config is None)
    assert quality.plan(missing, "gpu", None, 100.0) == ("skip", missing.note)


@pytest.mark.timeout(400)
def test_tiny_throughput_suite_writes_a_table_a_plot_and_raw_runs(tmp_path):
    done = _cli("throughput", "--budget", "tiny", "--only", "ppo-cartpole", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    markdown = (tmp_path / "throughput.md").read_text()
    assert markdown.startswith("# Throughput") and "- machine:" in markdown and "jax 0.10" in markdown
    rows = _table(markdown)
    assert [row[2] for row in rows] == ["1", "2"]  # one row per population size
    for row in rows:
        assert row[0] == "PPO (categorical)" and row[1] == "CartPole-v1"
        assert float(row[6].split()[0].replace(",", "")) > 0  # steady SPS
        assert float(row[5]) > 0  # compile seconds
    assert (tmp_path / "throughput_sps.png").read_bytes()[:8] == PNG_SIGNATURE
    payload = json.loads((tmp_path / "throughput.json").read_text())
    assert len(payload["runs"]) == 2 and all(run["status"] == "ok" for run in payload["runs"])
    assert markdown in done.stdout


@pytest.mark.timeout(400)
def test_tiny_quality_suite_marks_rows_and_lists_what_it_did_not_run(tmp_path):
    done = _cli("quality", "--budget", "tiny", "--only", "ppo-cartpole-1e5", "ppo-brax-ant-5e7",
                "ppo-atari-breakout-1e7", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    markdown = (tmp_path / "quality.md").read_text()
    rows = {row[0] + " " + row[1]: row for row in _table(markdown)}
    measured = rows["CartPole-v1 PPO"]
    assert measured[4] == str(quality.TINY_SEEDS) and measured[7] in ("pass", "within CI", "short")
    iqm, ci = measured[5].split(" [")
    low, high = (float(x) for x in ci.rstrip("]").split(", "))
    assert low <= float(iqm) <= high
    assert "rl-baselines3-zoo" in measured[6]
    assert rows["brax ant PPO"][7] == "not run" and "2-core CPU" in rows["brax ant PPO"][8]
    assert rows["Atari Breakout PPO"][8].startswith("no shipped Atari Breakout config")
    assert (tmp_path / "quality.png").read_bytes()[:8] == PNG_SIGNATURE
    payload = json.loads((tmp_path / "quality.json").read_text())
    assert [row["id"] for row in payload["rows"]] == ["ppo-cartpole-1e5", "ppo-atari-breakout-1e7", "ppo-brax-ant-5e7"]


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown suite 'nope'"),
    (["throughput", "--budget", "huge"], "unknown budget 'huge'"),
    (["throughput", "--only", "ppo-nowhere"], "unknown throughput row(s) ppo-nowhere"),
    (["throughput", "--reuse", "."], "--reuse and --max-cpu-hours apply to the quality suite only"),
    (["quality", "--reuse", "/no/such/folder"], "no such folder"),
    (["quality", "--repeats", "0"], "--repeats must be at least 1"),
    (["throughput", "--merge"], "--merge applies to the throughput suite with --only ROW"),
    (["scale", "--only", "size", "nope"], "unknown scale row(s) nope: choose from size, devices, cache"),
    (["sweep", "--reuse", "."], "--reuse and --max-cpu-hours apply to the quality suite only"),
])
def test_bad_bench_arguments_exit_2_with_one_line(args, message, tmp_path):
    done = _cli(*args, "--out", str(tmp_path / "out"), timeout=120)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
