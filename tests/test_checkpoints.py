"""Checkpoints and resume: a run killed with SIGKILL and resumed ends bit-for-bit like an
uninterrupted one; a corrupt newest checkpoint falls back to the previous good one; a
config that changes the state refuses to resume. All through the real CLI in subprocesses."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl.experiment import build
from jaxrl.experiment.checkpoints import Checkpointer
from jaxrl.experiment.run_dir import LOCK_NAME, read_metrics

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[1]
# 4 envs x 32 steps = 128 steps an update; 8 updates a chunk; a checkpoint every 2 chunks.
RUN = ["configs/ppo_cartpole.yaml", "--seeds", "4", "--no-progress", "env.num_envs=4",
       "algo.num_steps=32", "total_env_steps=98304", "log_every_env_steps=1024",
       "checkpoint.every_env_steps=2048", "eval.episodes=3", "eval.every_env_steps=8192"]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxrl", *args]


def env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}


def run_cli(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env())


def steps_saved(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def final_state(run_dir: Path):
    """The newest checkpoint's state, restored onto this process's device(s)."""
    config = config_lib.load(run_dir / "config.yaml")
    algo = build(config).algo
    pop = population.Population(algo, config.seeds)
    abstract = pop.members.abstract_state(population.stream_keys(0, config.seeds, 0),
                                  population.broadcast_hparams(algo.default_hparams, config.seeds))
    checkpointer = Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        return checkpointer.restore_latest(abstract)
    finally:
        checkpointer.close()


def listing(folder: Path, read: bool = False) -> dict[str, bytes | None]:
    """The folder's paths (and with `read`, each file's bytes): what "unchanged" means. The lock
    file a killed run left is not part of it (the next process removes it when it ends)."""
    return {str(p.relative_to(folder)): p.read_bytes() if read and p.is_file() else None
            for p in sorted(folder.rglob("*")) if p.name != LOCK_NAME}


def metric_rows(run_dir: Path) -> list[dict]:
    """metrics.csv without the wall-clock column."""
    return [{k: v for k, v in row.items() if k != "sps"} for row in read_metrics(run_dir / "metrics.csv")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    whole, killed = root / "whole", root / "killed"
    done = run_cli("train", *RUN, "--run-dir", str(whole))
    assert done.returncode == 0, done.stderr

    process = subprocess.Popen(command("train", *RUN, "--run-dir", str(killed)), cwd=ROOT,
                               env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(steps_saved(killed)) < 2 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists(), "the run ended before it could be killed"
    untouched = root / "killed_copy"
    shutil.copytree(killed, untouched)
    return whole, killed, untouched


def test_killed_run_resumes_bitwise_identical(runs):
    whole, killed, _ = runs
    saved_before = steps_saved(killed)
    done = run_cli("train", "--resume", str(killed))
    assert done.returncode == 0, done.stderr
    assert saved_before[-1] < 768  # it really was cut short (768 updates in all)
    a, b = final_state(whole), final_state(killed)
    assert a.step == b.step == 768
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert metric_rows(whole) == metric_rows(killed)  # no duplicate or missing rows
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    assert sa["final_eval"]["per_seed"] == sb["final_eval"]["per_seed"]
    events = [json.loads(line)["event"] for line in (killed / "timings.jsonl").read_text().splitlines()]
    assert "resume" in events
    assert len(steps_saved(killed)) <= 3  # keep_last 2 plus the best: none kept from before the kill


def test_corrupt_newest_checkpoint_falls_back_to_previous(runs, tmp_path):
    whole, _, untouched = runs
    run_dir = tmp_path / "corrupt"
    shutil.copytree(untouched, run_dir)
    steps = steps_saved(run_dir)
    assert len(steps) >= 2  # an older good one to fall back to
    newest = run_dir / "checkpoints" / str(steps[-1]) / "state"
    for data in [p for p in newest.rglob("*") if p.is_file() and p.parent.name == "d"]:
        data.write_bytes(data.read_bytes()[: max(1, data.stat().st_size // 3)])
    done = run_cli("train", "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "unreadable" in done.stderr and str(steps[-1]) in done.stderr
    a, b = final_state(whole), final_state(run_dir)
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert metric_rows(whole) == metric_rows(run_dir)


def test_same_command_again_resumes_automatically(runs, tmp_path):
    whole, _, untouched = runs
    run_dir = tmp_path / "again"
    shutil.copytree(untouched, run_dir)
    done = run_cli("train", *RUN, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "resuming the interrupted run" in done.stderr
    assert metric_rows(whole) == metric_rows(run_dir)


@pytest.mark.parametrize("overrides, words", [
    (["algo.network.hidden_sizes=[32]"], "algo.network.hidden_sizes ([64, 64] -> [32])"),
    (["env.num_envs=8"], "env.num_envs (4 -> 8)"),
    (["algo.lr=0.1"], "algo.lr"),
])
def test_changed_config_refuses_to_resume(runs, overrides, words):
    _, _, untouched = runs
    before = listing(untouched)
    done = run_cli("train", "--resume", str(untouched), *overrides)
    assert done.returncode == 2
    assert "cannot resume" in done.stderr and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert listing(untouched) == before


def test_resume_errors_are_clear(tmp_path, runs):
    whole, _, _ = runs
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    for folder, words in [(not_a_run, "is not a jaxrl run folder"), (whole, "already finished")]:
        done = run_cli("train", "--resume", str(folder), timeout=120)
        assert done.returncode == 2 and words in done.stderr, done.stderr


def test_an_edited_config_yaml_is_a_config_error_and_moves_no_checkpoint(runs, tmp_path):
    """Editing the run's own config.yaml is not corruption: resume refuses in one line, every
    checkpoint stays where it is, and putting the file back makes them restore again."""
    _, _, untouched = runs
    run_dir = tmp_path / "edited"
    shutil.copytree(untouched, run_dir)
    original = (run_dir / "config.yaml").read_text()
    edited = config_lib.load(run_dir / "config.yaml", ["algo.network.hidden_sizes=[32]"])
    (run_dir / "config.yaml").write_text(config_lib.dump(edited))
    before = listing(run_dir, read=True)
    done = run_cli("train", "--resume", str(run_dir), "--no-progress", timeout=200)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "was written by another config" in done.stderr and "hidden_sizes ([64, 64] -> [32])" in done.stderr
    assert listing(run_dir, read=True) == before
    (run_dir / "config.yaml").write_text(original)
    assert final_state(run_dir).step == steps_saved(untouched)[-1]


def test_a_damaged_checkpoint_costs_one_line_not_pages_of_logs(runs, tmp_path):
    _, _, untouched = runs
    run_dir = tmp_path / "damaged"
    shutil.copytree(untouched, run_dir)
    for step in steps_saved(run_dir):
        for data in [p for p in (run_dir / "checkpoints" / str(step)).rglob("*") if p.parent.name == "d"]:
            data.write_bytes(b"\0" * 7)
    before = listing(run_dir)
    done = run_cli("train", "--resume", str(run_dir), "--no-progress", timeout=200)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("jaxrl: error:")]
    assert len(errors) == 1 and "nothing was moved" in errors[0], done.stderr
    warned = [line for line in lines if line.startswith("UserWarning: checkpoint ")]
    assert len(warned) == len(steps_saved(run_dir)), done.stderr  # one line each, no logs, no tracebacks
    assert all(line.startswith("jaxrl: ") for line in lines if line not in warned), done.stderr
    assert listing(run_dir) == before


def test_a_second_process_is_refused_and_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path):
    """Two `jaxrl train` on one folder: the second is refused at once, naming the first, and
    writes nothing. Ctrl-C before the first checkpoint leaves nothing to resume: the same
    command again starts the run over."""
    run_dir = tmp_path / "run"
    args = [*RUN, "total_env_steps=8192", "checkpoint.every_env_steps=0", "--run-dir", str(run_dir)]
    # without the compilation cache the first compiles for ~20 s: Ctrl-C lands before its end
    first = subprocess.Popen(command("train", *args, "--compilation-cache", "off"), cwd=ROOT, env=env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run_dir / "config.yaml").exists():
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # paused, it holds its lock however long the others take
        for second in (["train", *args], ["train", "--resume", str(run_dir)]):
            done = run_cli(*second, timeout=120)
            assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert f"is in use by jaxrl process {first.pid} on " in done.stderr, done.stderr
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130 and "Traceback" not in err, err
    assert not steps_saved(run_dir) and not (run_dir / "summary.json").exists()
    done = run_cli("train", *args, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "stopped before its first checkpoint; starting it over" in done.stderr
    assert len(read_metrics(run_dir / "metrics.csv")) == 8 * 4  # 8 logged points x 4 seeds, each once


def test_zero_size_leaves_round_trip(tmp_path):
    """brax's mjx states hold zero-size arrays, which orbax refuses to save: they are left out
    and rebuilt from the abstract state, on the abstract state's devices."""
    mesh_sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    state = {"params": jax.numpy.arange(6.0).reshape(2, 3),
             "env": {"act": jax.numpy.zeros((2, 0)), "qpos": jax.numpy.ones((2, 4), jax.numpy.int32)},
             "host_empty": np.zeros((0, 5), np.float32)}
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(3, state, {"env_steps": 30}, score=1.0)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=mesh_sharding), state)
    abstract["host_empty"] = jax.ShapeDtypeStruct((0, 5), np.float32)  # no sharding: a host array
    restored = checkpointer.restore_latest(abstract)
    checkpointer.close()
    assert restored.step == 3 and restored.progress == {"env_steps": 30}
    assert jax.tree.structure(restored.state) == jax.tree.structure(state)
    for got, want in zip(jax.tree.leaves(restored.state), jax.tree.leaves(state)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert isinstance(restored.state["env"]["act"], jax.Array) and isinstance(restored.state["host_empty"], np.ndarray)
