"""DQN through the real CLI: resume with replay buffers in the checkpoint is bit-exact, without
them it refills and finishes; a population too large for memory is refused before anything
is written; `eval --trace` on MovieRec-v1 shows the recommended movie and the click."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrl.experiment.run_dir import read_metrics

from test_checkpoints import final_state, steps_saved

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[1]
# Rainbow (prioritised replay, 3-step windows, noisy nets...) on CartPole: 10 envs, 100
# updates a chunk, a checkpoint every chunk, 6 chunks.
TINY = ["configs/rainbow_cartpole.yaml", "--seeds", "2", "--no-progress", "total_env_steps=6000",
        "log_every_env_steps=1000", "checkpoint.every_env_steps=1000", "checkpoint.keep_last=10",
        "algo.learning_starts=500", "algo.buffer_size=2000", "eval.episodes=2", "eval.max_steps=100"]


def run_cli(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxrl", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def interrupt_after(run_dir: Path, step: int) -> None:
    """Leaves `run_dir` as a run that was killed right after saving checkpoint `step`."""
    for saved in steps_saved(run_dir):
        if saved > step:
            shutil.rmtree(run_dir / "checkpoints" / str(saved))
    (run_dir / "summary.json").unlink()


def metric_rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "sps"} for row in read_metrics(run_dir / "metrics.csv")]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dqn") / "whole"
    done = run_cli("train", *TINY, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "replay buffer" in done.stderr  # the memory plan is printed before compiling
    return run_dir


def test_rainbow_resume_with_replay_buffers_is_bitwise_identical(whole, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    first = steps_saved(whole)
    interrupt_after(resumed, first[1])
    done = run_cli("train", "--resume", str(resumed))
    assert done.returncode == 0, done.stderr
    a, b = final_state(whole), final_state(resumed)
    assert a.step == b.step == first[-1]
    buffer = a.state.buffer
    assert int(np.asarray(buffer.size).min()) > 0  # the buffers really were saved and restored
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert metric_rows(whole) == metric_rows(resumed)


def test_checkpoints_without_replay_buffers_are_small_and_resume(whole, tmp_path):
    run_dir = tmp_path / "lean"
    done = run_cli("train", *TINY, "checkpoint.replay_buffer=false", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr

    def saved_arrays(run: Path) -> list[str]:
        step = steps_saved(run)[-1]
        metadata = json.loads((run / "checkpoints" / str(step) / "state" / "_METADATA").read_text())
        return list(metadata["tree_metadata"])

    assert any("'buffer', 'data'" in key for key in saved_arrays(whole))
    lean = saved_arrays(run_dir)
    assert not any("'buffer', 'data'" in key for key in lean) and any("'params'" in key for key in lean)
    interrupt_after(run_dir, steps_saved(run_dir)[2])
    done = run_cli("train", "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr  # the buffers start empty and refill
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["final_eval"]["per_seed"]) == 2
    # switching the setting on resume would change what the checkpoints hold: refused
    interrupt_after(run_dir, steps_saved(run_dir)[2])
    done = run_cli("train", "--resume", str(run_dir), "checkpoint.replay_buffer=true")
    assert done.returncode == 2 and "checkpoint.replay_buffer" in done.stderr


def test_population_too_large_for_memory_is_refused(tmp_path):
    run_dir = tmp_path / "huge"
    done = run_cli("train", "configs/dqn_cartpole.yaml", "algo.buffer_size=50000000",
                   "--run-dir", str(run_dir), "--no-progress")
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert "largest population that fits is" in message and "buffer_size" in message
    assert not run_dir.exists()


def test_trace_of_movierec_shows_movie_and_click(tmp_path):
    run_dir = tmp_path / "movies"
    done = run_cli("train", "configs/dqn_movierec.yaml", "--seeds", "2", "--no-progress",
                   "total_env_steps=8000", "algo.learning_starts=1000", "log_every_env_steps=4000",
                   "eval.episodes=2", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    done = run_cli("eval", str(run_dir), "--trace", "--seed-index", "1")
    assert done.returncode == 0, done.stderr
    header, *steps = done.stdout.splitlines()
    assert "movie" in header and "clicked" in header and "q_values" in header
    assert any("True" in line or "False" in line for line in steps)
