"""`jaxrl bench peers`: the ratio/median helpers against hand-computed numbers, the peer settings
against the reference configs, and one real tiny run against rejax, stable-baselines3 and sbx."""

from __future__ import annotations

import json
import re
import sys

import pytest

from jaxrl.bench import common, configs_folder, peers

PPO = next(w for w in peers.WORKLOADS if w.name == "ppo-cartpole")
DQN = next(w for w in peers.WORKLOADS if w.name == "dqn-cartpole")
MACHINE = {"kind": "cpu-2core", "cpu_model": "test CPU", "cpu_count": 2, "platform": "cpu", "device_kind": "cpu",
           "device_count": 2, "date": "2026-01-01T00:00:00+00:00", "python": "3.11",
           "versions": {"jax": "0.10.2"}}


def run_record(system: str, repeat: int, sps: float, status: str = "ok", seeds: int = 1) -> dict:
    """A minimal raw measurement, as `peers.measure` returns it."""
    return {"workload": "ppo-cartpole", "system": system, "seeds": seeds, "repeat": repeat, "status": status,
            "steady_sps": sps, "compile_seconds": 2.0, "env_steps_per_seed": 4096, "requested_steps_per_seed": 4096,
            "final_eval": {"per_seed": [100.0, 200.0, 300.0, 400.0]}, "peak_rss_mib": 500.0}


def test_eval_cell_is_mean_and_the_fractional_iqm():
    assert peers.eval_cell([1.0, 2.0, 3.0, 4.0]) == "2.5 / 2.5"  # middle half: 2 and 3
    assert peers.eval_cell([0.0, 0.0, 10.0, 10.0, 10.0, 100.0]) == "21.7 / 8.3"  # (0/2 + 10 + 10 + 10/2) / 3
    assert peers.eval_cell([]) == "–"


def test_summary_is_median_min_max():
    assert peers.summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert peers.summary([1.0, 4.0, 2.0, 3.0])["median"] == 2.5
    assert peers.summary([]) is None


def test_ratios_pair_runs_of_the_same_repeat_and_skip_failures():
    ours = [run_record("jaxrl", r, sps) for r, sps in enumerate((100.0, 200.0, 300.0))]
    theirs = [run_record("sb3", 2, 100.0), run_record("sb3", 0, 50.0), run_record("sb3", 1, 1.0, status="error")]
    assert peers.paired_ratios(ours, theirs) == [2.0, 3.0]  # repeat 0: 100/50, repeat 2: 300/100
    rows = [common.median_of(ours) | {"system": "jaxrl"}, common.median_of(theirs) | {"system": "sb3"}]
    (ratio,) = peers.ratio_rows(rows, ours + theirs)
    assert ratio["peer"] == "sb3" and ratio["summary"] == {"median": 2.5, "min": 2.0, "max": 3.0, "n": 2}


def test_a_population_is_also_compared_with_the_peer_run_one_process_at_a_time():
    ours = [run_record("jaxrl", r, sps, seeds=64) for r, sps in enumerate((600.0, 900.0))]
    single = [run_record("sb3", r, sps) for r, sps in enumerate((10.0, 30.0))]
    waves = [run_record("sb3", r, sps, seeds=64) for r, sps in enumerate((20.0, 60.0))]
    rows = [common.median_of(runs) | {"system": runs[0]["system"]} for runs in (ours, single, waves)]
    by_mode = {(r["seeds"], r["mode"]): r["ratios"] for r in peers.ratio_rows(rows, ours + single + waves)}
    assert by_mode == {(1, "same size"): [], (64, "same size"): [30.0, 15.0], (64, "one at a time"): [60.0, 30.0]}


def test_concurrent_processes_are_summed_and_any_failure_fails_the_row():
    first = {"status": "ok", "steady_sps": 1000.0, "compile_seconds": 2.0, "env_steps_per_seed": 4096,
             "final_eval": {"per_seed": [10.0]}, "peak_rss_mib": 300.0, "process_seconds": 9.0}
    second = first | {"steady_sps": 3000.0, "compile_seconds": 4.0, "final_eval": {"per_seed": [30.0]},
                      "peak_rss_mib": 400.0, "process_seconds": 11.0}
    total = peers.aggregate_processes([first, second])
    assert total["steady_sps"] == 4000.0 and total["peak_rss_mib"] == 700.0
    assert total["compile_seconds"] == 3.0 and total["final_eval"]["per_seed"] == [10.0, 30.0]
    assert total["concurrent_processes"] == 2 and total["process_seconds"] == 11.0
    assert peers.aggregate_processes([first | {"compile_seconds": None}] * 2)["compile_seconds"] is None
    overlapping = peers.aggregate_processes([first | {"learn_window": [0.0, 10.0]},
                                             second | {"learn_window": [2.0, 12.0]}])
    assert overlapping["learn_overlap"] == 0.8  # both learned from 2 to 10 s, of 10 s
    assert peers.learn_overlap([[0.0, 4.0], [5.0, 9.0]]) == 0.0 and peers.learn_overlap([]) is None
    failed = peers.aggregate_processes([first, {"status": "timeout", "error": "no result within 9 s"}])
    assert failed["status"] == "timeout" and "9 s" in failed["error"]


def test_cells_format_ranges_and_evaluations():
    assert peers.fmt_range(2.0, 1.5, 2.5, 2, "×") == "2.00× [1.50–2.50]"
    assert peers.fmt_range(1234.0, 1234.0, 1234.0) == "1,234"
    assert peers.fmt_range(None, None, None) == "–"
    assert peers.eval_cell([100.0, 200.0, 300.0, 400.0]) == "250.0 / 250.0"
    assert peers.eval_cell([]) == "–"
    assert peers.seeds_cell("sb3", 64, 2) == "64 (as 2 concurrent 1-seed processes)"
    assert peers.seeds_cell("rejax", 64, None) == "64"


def test_plans_and_population_sizes():
    assert peers.population_sizes(PPO, "tiny") == (1, 2) and peers.population_sizes(PPO, "full") == (1, 64)
    assert peers.population_sizes(DQN, "quick") == (1, 16)
    for budget, plan in PPO.steps.items():  # whole 4 x 128 updates, so every system trains the same count
        assert all(steps % 512 == 0 for steps in plan[:3]), budget
    assert peers.steps_for(PPO, "full", "sb3", 64) == PPO.steps["full"].process
    assert peers.steps_for(PPO, "full", "rejax", 64) == PPO.steps["full"].population
    assert peers.steps_for(PPO, "full", "jaxrl", 1) == PPO.steps["full"].single
    assert peers.concurrent_processes(64, 2) == 2 and peers.concurrent_processes(2, 16) == 2
    assert peers.concurrent_processes(1, 16) == 1


def test_peer_settings_follow_the_reference_configs():
    config = peers.load_config(PPO, configs_folder(), "full")
    rejax = peers.rejax_spec(config, 64, 99_840, 10)
    assert rejax["settings"] | {"agent_kwargs": None} == {
        "env": "CartPole-v1", "num_envs": 4, "gamma": 0.99, "total_timesteps": 99_840, "eval_freq": 99_840,
        "skip_initial_evaluation": True, "normalize_observations": False, "num_steps": 128, "num_epochs": 4,
        "num_minibatches": 4, "gae_lambda": 0.95, "clip_eps": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
        "max_grad_norm": 0.5, "agent_kwargs": None}
    assert rejax["settings"]["agent_kwargs"] == {"activation": "tanh", "hidden_layer_sizes": [64, 64]}
    assert (rejax["lr"], rejax["anneal_lr"], rejax["result_prefix"]) == (2.5e-4, True, common.RESULT_PREFIX)
    sb3 = peers.sb3_spec(config, "sb3", 0, 51_200, 10)
    assert sb3["kwargs"] == {"n_steps": 128, "batch_size": 128, "n_epochs": 4, "gamma": 0.99, "gae_lambda": 0.95,
                             "clip_range": 0.2, "clip_range_vf": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
                             "max_grad_norm": 0.5, "normalize_advantage": True}
    assert sb3["policy"] == {"activation": "tanh", "optimizer_kwargs": {"eps": 1e-5},
                             "net_arch": {"pi": [64, 64], "vf": [64, 64]}, "ortho_init": True}
    assert sb3["num_envs"] == 4 and sb3["anneal_lr"] is True
    reference = peers.reference_spec(config, 64, 99_840, 10)
    assert reference["config"] == {  # PureJaxRL's names, the config's values
        "ENV_NAME": "CartPole-v1", "NUM_ENVS": 4, "TOTAL_TIMESTEPS": 99_840, "LR": 2.5e-4, "GAMMA": 0.99,
        "NUM_STEPS": 128, "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 4, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2,
        "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ADAM_EPS": 1e-5, "ANNEAL_LR": True}
    assert (reference["algo"], reference["seeds"], reference["eval_episodes"]) == ("ppo", 64, 10)

    config = peers.load_config(DQN, configs_folder(), "full")
    rejax = peers.rejax_spec(config, 16, 100_000, 10)
    assert {k: rejax["settings"][k] for k in ("buffer_size", "fill_buffer", "batch_size", "num_epochs",
                                              "target_update_freq", "polyak", "exploration_fraction", "ddqn")} == {
        "buffer_size": 10_000, "fill_buffer": 10_000, "batch_size": 128, "num_epochs": 1,
        "target_update_freq": 500, "polyak": 0.0, "exploration_fraction": 0.5, "ddqn": False}
    assert "max_grad_norm" not in rejax["settings"]  # rejax's default: no clipping
    assert (rejax["hidden_layer_sizes"], rejax["activation"], rejax["anneal_lr"]) == ([120, 84], "relu", False)
    sb3 = peers.sb3_spec(config, "sb3", 3, 100_000, 10)
    assert sb3["kwargs"] == {"buffer_size": 10_000, "learning_starts": 10_000, "batch_size": 128, "tau": 1.0,
                             "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "target_update_interval": 500,
                             "exploration_fraction": 0.5, "exploration_initial_eps": 1.0,
                             "exploration_final_eps": 0.05, "max_grad_norm": None}
    assert sb3["policy"] == {"activation": "relu", "optimizer_kwargs": {"eps": 1e-8}, "net_arch": [120, 84]}
    assert "max_grad_norm" not in peers.sb3_spec(config, "sbx", 3, 100_000, 10)["kwargs"]
    assert peers.reference_spec(config, 16, 100_000, 10)["config"] == {
        "ENV_NAME": "CartPole-v1", "NUM_ENVS": 10, "TOTAL_TIMESTEPS": 100_000, "LR": 2.5e-4, "GAMMA": 0.99,
        "BUFFER_SIZE": 10_000, "BUFFER_BATCH_SIZE": 128, "EPSILON_START": 1.0, "EPSILON_FINISH": 0.05,
        "EPSILON_ANNEAL_TIME": 50_000, "TARGET_UPDATE_INTERVAL": 500, "LEARNING_STARTS": 10_000,
        "TRAINING_INTERVAL": 10, "TAU": 1.0}
    tiny = peers.load_config(DQN, configs_folder(), "tiny")
    assert peers.sb3_spec(tiny, "sb3", 0, 3000, 10)["kwargs"]["learning_starts"] == 1000
    assert peers.rejax_spec(tiny, 2, 3000, 10)["settings"]["fill_buffer"] == 1000


def test_every_peer_has_its_differences_listed():
    for algo in ("ppo", "dqn"):
        assert {system for system, _ in peers.DIFFERENCES[algo]} == set(peers.SYSTEMS) - {"jaxrl"}


def test_unavailable_peers_are_rows_not_crashes():
    rows = [common.median_of([run_record("jaxrl", 0, 1000.0)]) | {"system": "jaxrl"},
            common.median_of([{"workload": "ppo-cartpole", "system": "sbx", "seeds": 1, "repeat": 0,
                               "status": "unavailable", "error": peers.PEERS_EXTRA,
                               "requested_steps_per_seed": 4096}]) | {"system": "sbx"}]
    runs = [run_record("jaxrl", 0, 1000.0)]
    markdown = peers.render(MACHINE, common.Budget("tiny", 1), rows, peers.ratio_rows(rows, runs), {})
    sbx_line = next(line for line in markdown.splitlines() if line.startswith("| PPO CartPole-v1 | sbx |"))
    assert "pip install 'jaxrl[peers]'" in sbx_line and sbx_line.count("|") == 10


def test_rejax_environment_failure_is_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXRL_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(peers.sys, "executable", str(tmp_path / "no-such-python"))
    python, why = peers.ensure_rejax_venv(timeout=30)
    assert python is None and why.startswith("rejax environment:")
    assert not peers.venv_complete(tmp_path / f"rejax-{peers.REJAX_VERSION}", peers.rejax_requirements())


def test_a_venv_counts_as_complete_only_with_its_marker(tmp_path):
    folder = tmp_path / "env"
    python = peers.venv_python(folder)
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert not peers.venv_complete(folder, ["rejax==0.1.3"])
    (folder / "jaxrl-complete.json").write_text(json.dumps(peers.venv_marker(["rejax==0.1.3"])))
    assert peers.venv_complete(folder, ["rejax==0.1.3"])
    assert not peers.venv_complete(folder, ["rejax==0.1.3", "jax==9"])
    # made by an install of jaxrl whose site-packages are gone: it would see no JAX
    stale = {"requirements": ["rejax==0.1.3"], "parent": [str(tmp_path / "deleted" / "site-packages")]}
    (folder / "jaxrl-complete.json").write_text(json.dumps(stale))
    assert not peers.venv_complete(folder, ["rejax==0.1.3"])


RATIO = re.compile(r"^(\d+\.\d+)×")


@pytest.mark.timeout(900)
def test_tiny_run_against_real_peers(tmp_path, capsys):
    """The whole suite at the tiny budget on PPO (all five systems at 1 and 2 seeds, the rejax
    environment created if missing), then each peer's DQN worker once."""
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("sbx")
    machine = common.machine_info(common.probe_devices())
    written = peers.run(common.Budget("tiny", 1), tmp_path, machine, timeout=300.0, only=("ppo-cartpole",))
    assert {path.name for path in written} == {"peers.md", "peers.json", "peers_ratios.png"}

    markdown = (tmp_path / "peers.md").read_text()
    assert markdown.startswith("# Peers") and markdown in capsys.readouterr().out
    assert "stable-baselines3 2." in markdown and "sbx-rl 0." in markdown and "rejax 0.1.3" in markdown
    lines = markdown.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("| workload | system |")))
    assert set(lines[head + 1]) <= set("|-") and lines[head + 1].count("|") == 10
    table = [line.split("|")[1:-1] for line in lines[head + 2:head + 12]]
    assert all(len(cells) == 9 for cells in table)
    assert sorted((cells[1].strip(), cells[2].strip().split()[0]) for cells in table) == sorted(
        (peers.LABELS[system], str(seeds)) for system in peers.SYSTEMS for seeds in (1, 2))
    for cells in table:
        assert float(cells[5].split()[0].replace(",", "")) > 0, cells  # steady SPS
        if cells[1].strip() != "jaxrl":
            assert float(RATIO.match(cells[6].strip()).group(1)) > 0, cells
    ratios = [line.split("|")[1:-1] for line in lines if line.startswith("| PPO CartPole-v1 | jaxrl / ")]
    # 4 peers at 1 seed; at 2 seeds 4 at equal size and SB3/sbx also one process at a time
    assert len(ratios) == 10 and all(float(RATIO.match(cells[4].strip()).group(1)) > 0 for cells in ratios)
    assert sum("one process at a time" in cells[3] for cells in ratios) == 2

    png = (tmp_path / "peers_ratios.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "peers_ratios.png").shape[0] > 100
    payload = json.loads((tmp_path / "peers.json").read_text())
    assert len(payload["runs"]) == 10 and all(run["status"] == "ok" for run in payload["runs"])
    assert len(payload["ratios"]) == 10 and payload["plan"]["ppo-cartpole"]["single"] == 4096

    python, why = peers.ensure_rejax_venv()  # already there: the run above made it
    assert why is None
    config = peers.load_config(DQN, configs_folder(), "tiny")
    for interpreter, worker, spec in ((python, "rejax_worker.py", peers.rejax_spec(config, 2, 3000, 2)),
                                      (sys.executable, "reference_worker.py", peers.reference_spec(config, 2, 3000, 2))):
        record = peers.run_population(interpreter, worker, spec, 300.0, {})
        assert record["status"] == "ok", record.get("error")
        assert record["env_steps_per_seed"] == 3000 and len(record["final_eval"]["per_seed"]) == 2
    for library in ("sb3", "sbx"):
        record = peers.run_sb3([peers.sb3_spec(config, library, 0, 3000, 2)], 300.0, {})
        assert record["status"] == "ok", record.get("error")
        assert record["steady_sps"] > 0 and record["env_steps_per_seed"] == 3000


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
