"""Scale-out: padding over devices, hyperparameter sweeps as a vmapped axis (and static
sweeps as programs in sequence), memory-aware splitting into sub-populations."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl import sweep as sweep_lib
from jaxrl.experiment.run_dir import read_metrics
from jaxrl.experiment.train import train

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["total_env_steps=2048", "log_every_env_steps=1024", "eval.episodes=2", "env.num_envs=4",
        "algo.num_steps=32", "algo.num_minibatches=2", "checkpoint.every_env_steps=0"]
COMPARED = ("episode_return", "value_loss", "policy_loss", "entropy", "approx_kl", "eval_return")


def jaxrl(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("jaxrl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxrl"]
    environ = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**environ, **(env or {})})


def rows_by(path: Path, *keys: str) -> dict[tuple, dict]:
    return {tuple(row[k] for k in ("env_steps",) + keys): row for row in read_metrics(path)}


def assert_same_rows(a: dict, b: dict, rtol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for name in COMPARED:
            x, y = a[key].get(name, ""), b[key].get(name, "")
            if x == "" or y == "":
                assert x == y, (key, name)
            else:
                np.testing.assert_allclose(float(x), float(y), rtol=rtol, atol=1e-6, err_msg=f"{key} {name}")


def test_six_seeds_on_four_devices_are_padded_and_match_one_device(tmp_path):
    runs = {}
    for devices in (1, 4):
        run_dir = tmp_path / f"d{devices}"
        done = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "6", "--devices", str(devices),
                     "--run-dir", str(run_dir), "--no-progress", *TINY)
        assert done.returncode == 0, done.stderr
        init = json.loads((run_dir / "timings.jsonl").read_text().splitlines()[0])
        summary = json.loads((run_dir / "summary.json").read_text())
        runs[devices] = run_dir
        assert len(summary["final_eval"]["per_seed"]) == 6 and summary["devices"] == devices
        assert (init["members"], init["padded_members"]) == (6, 6 if devices == 1 else 8)
        assert sorted({int(r["seed"]) for r in read_metrics(run_dir / "metrics.csv")}) == list(range(6))
    assert_same_rows(rows_by(runs[1] / "metrics.csv", "seed"), rows_by(runs[4] / "metrics.csv", "seed"))
    # the checkpoint holds the 6 real members: `jaxrl eval` on one device restores the 4-device run
    done = jaxrl("eval", str(runs[4]), "--devices", "1")
    assert done.returncode == 0, done.stderr
    evaluated = json.loads(sorted((runs[4] / "evaluations").glob("*.json"))[0].read_text())
    summary = json.loads((runs[4] / "summary.json").read_text())
    np.testing.assert_allclose(evaluated["per_seed"], summary["final_eval"]["per_seed"], rtol=1e-5)


def test_three_learning_rates_by_four_seeds_equal_twelve_single_runs(tmp_path):
    lrs = [1e-3, 3e-4, 1e-4]
    swept = config_lib.load("configs/ppo_cartpole.yaml", TINY + ["seeds=4", f"algo.lr={lrs}",
                                                                 "loggers=[tensorboard]"])
    summary = train(swept, tmp_path / "sweep", progress=False)
    sweep_rows = rows_by(tmp_path / "sweep" / "metrics.csv", "setting", "seed")
    assert len({key[1:] for key in sweep_rows}) == 12
    for lr in lrs:
        single = config_lib.load("configs/ppo_cartpole.yaml", TINY + ["seeds=4", f"algo.lr={lr}"])
        train(single, tmp_path / f"lr{lr}", progress=False)
        name = f"lr={lr:g}"
        mine = {(k[0], k[2]): v for k, v in sweep_rows.items() if k[1] == name}
        assert_same_rows(mine, rows_by(tmp_path / f"lr{lr}" / "metrics.csv", "seed"))
    ranked = summary["settings"]
    assert [row["rank"] for row in ranked] == [1, 2, 3]
    assert sorted(row["setting"] for row in ranked) == sorted(f"lr={lr:g}" for lr in lrs)
    assert all(ranked[i]["iqm"] >= ranked[i + 1]["iqm"] for i in range(2))
    assert (tmp_path / "sweep" / "plots" / "learning_curve.png").stat().st_size > 0
    from test_cli import read_tensorboard

    scalars, _ = read_tensorboard(tmp_path / "sweep" / "tensorboard")  # per setting (TensorBoard writes = as _)
    for lr in lrs:
        losses = [float(v["value_loss"]) for k, v in sweep_rows.items() if k[0] == "2048" and k[1] == f"lr={lr:g}"]
        assert scalars[f"lr_{lr:g}/mean/value_loss"][2048] == pytest.approx(np.mean(losses), rel=1e-4)
        assert scalars[f"lr_{lr:g}/seed_3/value_loss"][2048] == pytest.approx(losses[3], rel=1e-4)


def test_accelerator_state_splits_into_host_memory_but_cpu_state_cannot():
    """On an accelerator, states beyond device memory wait in host memory between calls; on
    CPU devices (host RAM is the device memory), or when the host cannot hold them either,
    splitting cannot help and the error names the sizes."""
    from jaxrl.errors import ConfigError
    from jaxrl.memory import MemoryPlan, fitting_members

    gpu = MemoryPlan(members=64, member_bytes=100, replay_bytes=60, available=1000, where="1 gpu", copies=1)
    assert fitting_members(gpu, host_free=10**6) == 9  # 0.9 * 1000 // 100
    assert fitting_members(gpu._replace(available=10**5), host_free=10**6) is None  # fits whole
    with pytest.raises(ConfigError, match="host memory"):
        fitting_members(gpu, host_free=5000)
    with pytest.raises(ConfigError, match="largest population that fits is 4 seeds"):
        fitting_members(gpu._replace(copies=2), host_free=10**6)


def test_static_sweep_runs_one_program_per_value_and_ranks_every_setting(tmp_path):
    run_dir = tmp_path / "static"
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "2", "--run-dir", str(run_dir),
                 "--no-progress", *TINY,
                 "sweep={algo.lr: [1e-3, 1e-4], static: {algo.num_minibatches: [1, 2]}}")
    assert done.returncode == 0, done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [p["program"] for p in summary["programs"]] == ["num_minibatches=1", "num_minibatches=2"]
    assert len(summary["settings"]) == 4 and summary["best"] == summary["settings"][0]["setting"]
    for program in summary["programs"]:
        inner = json.loads((run_dir / program["program"] / "summary.json").read_text())
        assert len(inner["settings"]) == 2
    assert (run_dir / "plots" / "learning_curve.png").is_file()
    assert "settings ranked by IQM" in done.stdout
    # interrupted in the second program: the same command skips the first and resumes the second
    first = (run_dir / "num_minibatches=1" / "metrics.csv").read_text()
    (run_dir / "summary.json").unlink()
    (run_dir / "num_minibatches=2" / "summary.json").unlink()
    again = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "2", "--run-dir", str(run_dir),
                  "--no-progress", *TINY, "sweep={algo.lr: [1e-3, 1e-4], static: {algo.num_minibatches: [1, 2]}}")
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and (run_dir / "num_minibatches=1" / "metrics.csv").read_text() == first
    assert json.loads((run_dir / "summary.json").read_text())["settings"] == summary["settings"]


@pytest.mark.parametrize("overrides, words", [
    (["algo.num_steps=[16,32]"], "move it under sweep.static"),
    (["sweep={algo.lr: [1e-3], env.num_envs: [2, 4]}"], "sweep.env.num_envs changes the compiled program"),
    (["sweep={algo.lr: {low: 1e-4, high: 1e-2}}"], "a range needs low, high and num"),
    (["sweep={algo.gamma: [0.9, 1.5]}"], "algo.gamma must lie in [0, 1]"),
    (["env.normalize_reward=true", "algo.gamma=[0.9,0.99]"], "sweep.algo.gamma changes the compiled program"),
])
def test_bad_sweeps_are_one_line_errors(overrides, words):
    with pytest.raises(config_lib.ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        config_lib.load("configs/ppo_cartpole.yaml", overrides)


def test_sweep_ranges_and_inline_lists_expand_to_a_grid():
    config = config_lib.load("configs/ppo_cartpole.yaml", [
        "algo.ent_coef=[0.0,0.01]", "sweep={algo.lr: {low: 1e-4, high: 1e-2, num: 3, log: true}}"])
    settings = sweep_lib.layout(config).settings
    assert [s.values for s in settings] == [
        {"algo.lr": pytest.approx(lr), "algo.ent_coef": ent} for lr in (1e-4, 1e-3, 1e-2) for ent in (0.0, 0.01)]
    assert config.algo.ent_coef == 0.0  # the base config keeps the first value


def test_more_devices_than_exist_is_a_clear_error(tmp_path):
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--devices", "4", "--run-dir", str(tmp_path / "x"),
                 *TINY, env={"JAX_NUM_CPU_DEVICES": "2"}, timeout=120)
    assert done.returncode == 2 and "asks for more devices than the 2" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x").exists()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_in_two_processes(run_dir: Path, *args: str) -> None:
    """`jaxrl train` of one run folder by two local processes (one CPU device each) joined
    through jax.distributed on 127.0.0.1."""
    script = Path(sys.executable).with_name("jaxrl")
    command = ([str(script)] if script.exists() else [sys.executable, "-m", "jaxrl"]) + [
        "train", *args, "--run-dir", str(run_dir), "--no-progress", "--distributed",
        "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2", "--distributed-timeout", "60"]
    environ = {**os.environ, "JAX_NUM_CPU_DEVICES": "1"}
    processes = [subprocess.Popen(command + ["--process-id", str(i)], cwd=ROOT, env=environ, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
    try:
        outputs = [p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0, 0], [o[1][-2000:] for o in outputs]


def assert_same_run(alone: Path, together: Path, seeds: int) -> None:
    summary = json.loads((together / "summary.json").read_text())
    assert summary["devices"] == 2 and len(summary["final_eval"]["per_seed"]) == seeds
    assert_same_rows(rows_by(alone / "metrics.csv", "seed"), rows_by(together / "metrics.csv", "seed"))
    assert summary["final_eval"]["per_seed"] == pytest.approx(
        json.loads((alone / "summary.json").read_text())["final_eval"]["per_seed"], rel=1e-5)
    assert sorted(p.name for p in (together / "checkpoints").iterdir() if p.name.isdigit())  # saved together


def test_two_processes_with_jax_distributed_train_one_population_like_one_process(tmp_path):
    """Two local processes (one CPU device each) join through jax.distributed on 127.0.0.1,
    share a population of 3 (padded to 4) and write one run folder equal to a single process's."""
    alone = tmp_path / "alone"
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "3", "--run-dir", str(alone),
                 "--no-progress", *TINY, env={"JAX_NUM_CPU_DEVICES": "1"})
    assert done.returncode == 0, done.stderr
    train_in_two_processes(tmp_path / "together", "configs/ppo_cartpole.yaml", "--seeds", "3", *TINY)
    assert_same_run(alone, tmp_path / "together", 3)


def test_host_envs_under_jax_distributed_step_in_each_process_like_one_process(tmp_path):
    """Host envs across machines: each of two processes steps the gymnasium workers of the
    members on its own device; the run equals one process stepping all of them on two devices."""
    pytest.importorskip("gymnasium")
    args = ["configs/ppo_cartpole.yaml", "--seeds", "4", *TINY, "env.backend=gymnasium", "env.num_workers=1",
            "checkpoint.every_env_steps=1024"]
    alone = tmp_path / "alone"
    done = jaxrl("train", *args, "--run-dir", str(alone), "--no-progress", env={"JAX_NUM_CPU_DEVICES": "2"})
    assert done.returncode == 0, done.stderr
    train_in_two_processes(tmp_path / "together", *args)
    assert_same_run(alone, tmp_path / "together", 4)


def test_an_unreachable_coordinator_is_a_clear_error_within_the_timeout(tmp_path):
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--run-dir", str(tmp_path / "x"), *TINY,
                 "--distributed", "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2",
                 "--process-id", "1", "--distributed-timeout", "3", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "could not reach the coordinator" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()


def test_a_second_run_loads_its_programs_from_the_compilation_cache(tmp_path):
    cache = tmp_path / "cache"
    summaries = []
    for name in ("first", "second"):
        done = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "2", "--run-dir", str(tmp_path / name),
                     "--no-progress", "--compilation-cache", str(cache), *TINY)
        assert done.returncode == 0, done.stderr
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    first, second = (s["compile_cache"] for s in summaries)
    assert first["hits"] == 0 and first["misses"] >= 2 and first["dir"] == str(cache)
    assert second["hits"] >= 2 and second["misses"] == 0 and second["seconds_saved"] > 0  # nothing recompiled
    assert summaries[1]["compile_seconds"] < summaries[0]["compile_seconds"]
    assert "of compiling saved" in done.stdout


def test_a_forced_memory_limit_splits_the_population_with_the_same_results(tmp_path, capfd):
    """The state of 6 PPO members fits the limit, but the compiled program (rollouts,
    minibatches, gradients) does not: the population is split before anything runs, and the
    results equal the unsplit run's."""
    import jax

    from jaxrl import memory, population
    from jaxrl.experiment.train import build

    config = config_lib.load("configs/ppo_cartpole.yaml", TINY + ["seeds=6", "algo.num_steps=128"])
    algo = build(config).algo
    pop = population.Population(algo, 6, devices=jax.devices()[:1])
    program = pop.program_bytes(pop.members.place(population.broadcast_hparams(algo.default_hparams, 6)))
    state = memory.plan(algo, 6, jax.devices()[:1]).total
    assert program > state  # rollouts and temporaries on top of the state
    limit = int((state + program) / 2 / memory.HEADROOM)  # room for the state, not the program
    one_device = jax.devices()[:1]
    train(config, tmp_path / "whole", progress=False, devices=one_device)
    train(config, tmp_path / "split", progress=False, devices=one_device, memory_limit=limit)
    assert "running sub-populations" in capfd.readouterr().err
    init = json.loads((tmp_path / "split" / "timings.jsonl").read_text().splitlines()[0])
    assert init["calls_per_chunk"] >= 2 and init["members"] == 6
    assert_same_rows(rows_by(tmp_path / "whole" / "metrics.csv", "seed"),
                     rows_by(tmp_path / "split" / "metrics.csv", "seed"))


def cut_back(run_dir: Path) -> None:
    """Makes a finished run look interrupted after its first checkpoint: newer checkpoints
    and the summary are gone (as if it had been killed there)."""
    import shutil

    steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert len(steps) >= 2
    for step in steps[1:]:
        shutil.rmtree(run_dir / "checkpoints" / str(step))
    (run_dir / "summary.json").unlink()


@pytest.mark.parametrize("layout", [["--devices", "2"], ["--devices", "1", "--max-population-chunk", "2"]],
                         ids=["padded", "split"])
def test_padded_and_split_runs_resume_to_the_same_end(tmp_path, layout):
    args = ["train", "configs/ppo_cartpole.yaml", "--seeds", "3", "--no-progress", *TINY,
            "total_env_steps=4096", "checkpoint.every_env_steps=1024", *layout]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for run_dir in (whole, resumed):
        done = jaxrl(*args, "--run-dir", str(run_dir))
        assert done.returncode == 0, done.stderr
    cut_back(resumed)
    done = jaxrl(*args, "--run-dir", str(resumed))
    assert done.returncode == 0 and "resuming the interrupted run" in done.stderr, done.stderr
    assert_same_rows(rows_by(whole / "metrics.csv", "seed"), rows_by(resumed / "metrics.csv", "seed"), rtol=0)
    per_seed = [json.loads((d / "summary.json").read_text())["final_eval"]["per_seed"] for d in (whole, resumed)]
    assert per_seed[0] == per_seed[1] and len(per_seed[0]) == 3
