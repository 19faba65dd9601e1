"""`jaxrl bench rainbow | scale | checkpoint | host | sweep | search`: the pieces that plan rows
and pair ratios, and a real tiny-budget run of each suite through the CLI writing a table with
the expected rows and finite numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrl.bench import checkpoint, common, host, rainbow, scale, search, sweep

REPO = Path(__file__).resolve().parents[1]
MACHINE = {"kind": "cpu-2core", "cpu_model": "test CPU", "cpu_count": 2, "platform": "cpu", "device_kind": "cpu",
           "device_count": 2, "date": "2026-01-01T00:00:00+00:00", "python": "3.11", "versions": {"jax": "0.10.2"}}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`jaxrl bench ...` as a user runs it, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "jaxrl", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "JAXRL_COMPILATION_CACHE": "off"})


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every Markdown table of a report, as its data rows of cells."""
    tables, current = [], None
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current = [] if current is None else current
            current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif current is not None:
            assert set("".join(current[1])) <= set("-:"), "second table line is the header rule"
            tables.append(current[2:])
            current = None
    return tables


def _number(cell: str) -> float:
    """The leading number of a cell such as `12,345 [11,000–13,000]` or `1.25×`."""
    value = float(cell.split()[0].rstrip("×%").replace(",", ""))
    assert math.isfinite(value), cell
    return value


def _run_suite(suite: str, out: Path, *args: str) -> str:
    done = _cli(suite, "--budget", "tiny", "--out", str(out), *args)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (out / f"{suite}.md").read_text()
    assert markdown in done.stdout and "- machine:" in markdown
    assert json.loads((out / f"{suite}.json").read_text())["budget"]["name"] == "tiny"
    return markdown


def test_rainbow_ratios_pair_each_part_with_plain_dqn_within_a_repeat():
    runs = [{"part": "dqn", "repeat": 0, "status": "ok", "steady_sps": 100.0},
            {"part": "dqn", "repeat": 1, "status": "ok", "steady_sps": 200.0},
            {"part": "c51", "repeat": 0, "status": "ok", "steady_sps": 40.0},
            {"part": "c51", "repeat": 1, "status": "ok", "steady_sps": 100.0}]
    ratios = rainbow.ratios_to_plain(runs)
    assert ratios["c51"] == {"median": 0.45, "min": 0.4, "max": 0.5, "n": 2} and ratios["double"] is None
    assert {part.name for part in rainbow.ROWS} >= set(rainbow.TINY)


def test_scale_plans_rows_per_part_and_device_counts():
    plan = scale.PLANS[("full", "cpu")]
    rows = scale.plan_rows(plan, ["size", "devices"], MACHINE)
    sizes = [(r["population"], r["requested_steps_per_seed"]) for r, _ in rows if r["part"] == "size"]
    assert sizes[-2:] == [(1024, 20_480), (4096, 10_752)] and sizes[0] == (1, plan.steps)
    assert [devices for r, devices in rows if r["part"] == "devices"] == [1, 2, 4]
    assert scale.device_counts(plan, MACHINE | {"platform": "gpu", "device_count": 8}) == [1, 2, 4, 8]
    assert scale.device_counts(plan, MACHINE | {"platform": "gpu", "device_count": 6}) == [1, 2, 4, 6]


def test_scale_device_table_is_relative_to_one_device():
    run = {"part": "devices", "population": 2, "cache": "off", "status": "ok", "compile_seconds": 5.0,
           "env_steps_per_seed": 2048, "peak_rss_mib": 700.0, "chunk_seconds": [1.0, 1.0]}
    runs = [run | {"devices_requested": 1, "devices_used": 1, "steady_sps": 100.0},
            run | {"devices_requested": 2, "devices_used": 2, "steady_sps": 150.0},
            {"part": "devices", "population": 2, "cache": "off", "devices_requested": 4, "status": "timeout",
             "error": "no result within 9 s"}]
    (table,) = _tables(scale.render(MACHINE, common.Budget("tiny", 1), scale.PLANS[("tiny", "cpu")], runs))
    assert [row[7] for row in table[:2]] == ["1.00×", "1.50×"] and table[1][3] == "1"
    assert table[2][0] == "4" and "no result within 9 s" in table[2][-1]


def test_host_pairs_envpool_with_envpool_batch_in_one_process():
    plan = host.PLANS["quick"]
    assert host.entries(plan, ["pool", "envpool", "envpool-batch"]) == [
        (("pool",), 16, 1), (("pool",), 16, 2), (("envpool", "envpool-batch"), 16, 0),
        (("pool",), 64, 1), (("pool",), 64, 2), (("envpool", "envpool-batch"), 64, 0)]
    assert host.entries(plan, ["envpool-batch"]) == [(("envpool-batch",), 16, 0), (("envpool-batch",), 64, 0)]
    assert host.window_steps(plan, 16) == 625 and host.window_steps(plan, 1024) == plan.min_window_steps
    runs = [{"system": "envpool-batch", "num_envs": 4, "workers": None, "status": "ok", "window_sps": [1.0, 3.0],
             "setup_seconds": 0.5, "paired_ratios": [0.8, 0.9], "repeat": r} for r in range(2)]
    (row,) = host.rows_of(runs)
    assert row["steady_sps"] == 2.0 and row["paired_ratio"] == pytest.approx(0.85)


def test_sweep_trials_become_configs_and_ratios_pair_within_a_repeat(tmp_path):
    search_config = sweep.search_config(REPO / "configs", sweep.PLANS["tiny"])
    trial = sweep.trial_config(search_config, {"algo.lr": 1e-3, "algo.clip_eps": 0.25})
    assert "search" not in trial and (trial["algo"]["lr"], trial["algo"]["clip_eps"]) == (1e-3, 0.25)
    assert search_config["algo"]["lr"] != 1e-3  # the search config itself is left as it was
    runs = [{"mode": "batched", "repeat": 0, "status": "ok", "seconds": 10.0},
            {"mode": "processes", "repeat": 0, "status": "ok", "seconds": 95.0},
            {"mode": "batched", "repeat": 1, "status": "ok", "seconds": 20.0},
            {"mode": "processes", "repeat": 1, "status": "ok", "seconds": 100.0}]
    rows = {row["mode"]: row for row in sweep.mode_rows(runs)}
    assert rows["processes"]["ratio"] == {"median": 7.25, "min": 5.0, "max": 9.5, "n": 2}
    assert rows["batched"]["seconds"]["median"] == 15.0


def test_checkpoint_and_search_budgets():
    case = next(c for c in checkpoint.ROWS if c.name == "dqn-no-buffers")
    assert checkpoint.overrides(case, checkpoint.PLANS["tiny"], "tiny") == [
        "checkpoint.replay_buffer=false", "checkpoint.every_env_steps=1000", "log_every_env_steps=1000",
        "algo.learning_starts=1000", "eval.every_env_steps=0"]
    assert checkpoint.overrides(case, checkpoint.PLANS["full"], "full") == [
        "checkpoint.replay_buffer=false", "eval.every_env_steps=0"]  # the config's default interval
    overrides = search.confirm_overrides(REPO / "configs" / "ppo_cartpole_search.yaml", search.PLANS["full"], 16)
    assert overrides == ["total_env_steps=200000", "seeds=16", "seed=1000", "log_every_env_steps=10240",
                         "eval.every_env_steps=51200", "checkpoint.every_env_steps=0"]
    configs = {path.name for path in (REPO / "configs").glob("*.yaml")}
    assert {name for row in search.ROWS for name in (row.search_config, row.shipped_config)} <= configs


@pytest.mark.timeout(600)
def test_tiny_rainbow_suite_measures_parts_against_plain_dqn(tmp_path):
    table = _tables(_run_suite("rainbow", tmp_path, "--only", "dqn", "double"))[0]
    assert [row[0] for row in table] == ["plain DQN", "+ double Q-learning"]
    for row in table:
        assert row[2] == "2" and _number(row[3]) > 0 and _number(row[5]) > 0 and _number(row[4]) > 0
    assert table[0][6] == "–" and _number(table[1][6]) > 0  # vs plain DQN


@pytest.mark.timeout(600)
def test_tiny_scale_suite_compiles_from_a_warm_cache(tmp_path):
    markdown = _run_suite("scale", tmp_path, "--only", "cache")
    (table,) = _tables(markdown)
    assert [row[0] for row in table] == list(scale.CACHE_MODES.values())
    off, cold, warm = table
    assert all(_number(row[2]) > 0 and _number(row[6]) > 0 for row in table)
    assert off[4] == "–" and int(warm[4].split(" / ")[1]) == 0 and int(warm[4].split(" / ")[0]) > 0
    assert int(cold[4].split(" / ")[1]) > 0 and int(warm[5]) > 0  # cold filled the folder, warm read it


@pytest.mark.timeout(600)
def test_tiny_checkpoint_suite_reports_saves_and_sizes(tmp_path):
    (table,) = _tables(_run_suite("checkpoint", tmp_path, "--only", "dqn-buffers"))
    (row,) = table
    assert row[0] == "DQN, buffers saved" and row[2] == "2" and row[4] == "1,000"
    assert int(row[5]) >= 2 and len(row[6].split(", ")) == int(row[5])  # a save per interval and one at the end
    assert _number(row[7]) > 0 and 0 < _number(row[8]) < 100


@pytest.mark.timeout(600)
def test_tiny_host_suite_steps_every_backend(tmp_path):
    pytest.importorskip("Box2D")
    pytest.importorskip("envpool")
    (table,) = _tables(_run_suite("host", tmp_path))
    assert [row[0] for row in table] == ["gymnasium SyncVectorEnv", "gymnasium AsyncVectorEnv (1 process/env)",
                                         "jaxrl GymnasiumPool, 1 worker(s)", "raw EnvPool (its own step loop)",
                                         "jaxrl EnvPoolBatch"]
    assert all(row[1] == "4" and _number(row[2]) > 0 for row in table)
    assert _number(table[2][5]) > 0 and _number(table[4][6]) > 0  # vs AsyncVectorEnv, vs raw EnvPool


@pytest.mark.timeout(600)
def test_tiny_sweep_suite_times_a_sweep_and_its_trials_as_processes(tmp_path):
    pytest.importorskip("optuna")
    markdown = _run_suite("sweep", tmp_path, "--only", "processes")
    (table,) = _tables(markdown)
    assert [row[0] for row in table] == ["batched", "one process per trial"]
    assert _number(table[0][2]) > 0 and _number(table[1][2]) > 0 and _number(table[1][3]) > 0


@pytest.mark.timeout(600)
def test_tiny_search_suite_confirms_the_best_trial_on_fresh_seeds(tmp_path):
    pytest.importorskip("optuna")
    confirm, sweeps = _tables(_run_suite("search", tmp_path))
    assert [(row[0], row[1], row[2]) for row in confirm] == [("PPO CartPole-v1", "shipped", "2"),
                                                             ("PPO CartPole-v1", "best trial", "2")]
    for row in confirm:
        low, high = (float(x) for x in row[4].split(" [")[1].rstrip("]").split(", "))
        assert low <= _number(row[4]) <= high and _number(row[8]) > 0
    (sweep_row,) = sweeps
    assert sweep_row[2] == "2 / 0 / 0" and sweep_row[3] == "eval_auc" and "algo.lr=" in sweep_row[5]
    assert "algo:" in (tmp_path / "search_ppo_cartpole_best_config.yaml").read_text()  # the sweep's best, kept
