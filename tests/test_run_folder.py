"""The run folder's guarantees, piece by piece: one process at a time (a real second process
is refused naming the holder; a killed holder leaves no stale lock), what counts as a run
folder, a run that stopped before its first checkpoint starts over, metrics.csv cut to the
checkpoint (and refused when it is not a metrics table), and real orbax checkpoints on disk:
a damaged one is set aside only once an older one restores, one written by another config
is a config error that moves nothing, and keep_last holds across a resume."""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxrl import config as config_lib
from jaxrl.errors import ConfigError, RunDirError
from jaxrl.experiment.checkpoints import CheckpointError, Checkpointer, plain_config, written_by
from jaxrl.experiment.run_dir import LOCK_NAME, RunLock, is_run_folder, truncate_metrics
from jaxrl.experiment.train import open_run, write_config

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (what "unchanged" means)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hold_lock_in_subprocess(folder: Path) -> subprocess.Popen:
    """A real second process that takes the run folder's lock and waits."""
    code = textwrap.dedent(f"""
        import sys, time
        from jaxrl.experiment.run_dir import RunLock
        with RunLock({str(folder)!r}):
            print("locked", flush=True)
            time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold_lock_in_subprocess(run_dir)
    try:
        with pytest.raises(RunDirError, match=rf"in use by jaxrl process {holder.pid} on "):
            with RunLock(run_dir):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / LOCK_NAME).exists()  # the file stays behind, but no lock with it
    with RunLock(run_dir) as lock:
        with RunLock(run_dir) as again:  # re-entrant within one process
            assert again is lock
        assert (run_dir / LOCK_NAME).exists()
    assert not (run_dir / LOCK_NAME).exists()


def test_a_lock_removes_the_folders_it_created_when_nothing_was_written(tmp_path):
    with RunLock(tmp_path / "a" / "b" / "run"):
        assert (tmp_path / "a" / "b" / "run" / LOCK_NAME).exists()
    assert list(tmp_path.iterdir()) == []
    with RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.yaml").write_text("seeds: 1\n")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["config.yaml"]


def write_unstarted_run(run_dir: Path, config: config_lib.Config) -> None:
    """What a run that was stopped before its first checkpoint leaves."""
    run_dir.mkdir()
    (run_dir / "checkpoints").mkdir()
    write_config(run_dir, config)
    (run_dir / "metrics.csv").write_text("update,env_steps,member\n1,128,0\n")


def test_a_project_folder_holding_a_config_is_not_a_run(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "config.yaml").write_text((ROOT / "configs" / "ppo_cartpole.yaml").read_text())
    assert not is_run_folder(project)
    config = config_lib.load(project / "config.yaml")
    assert open_run(project, config) == (config, False)  # train then refuses the non-empty folder
    with pytest.raises(RunDirError, match="is not a jaxrl run folder"):
        open_run(project, resume=True)


def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path, capsys):
    config = config_lib.load("ppo_cartpole", ["seeds=2"])
    run_dir = tmp_path / "run"
    write_unstarted_run(run_dir, config)
    assert is_run_folder(run_dir)
    before = snapshot(run_dir)
    with pytest.raises(ConfigError, match=r"cannot resume .*seeds \(2 -> 3\)"):
        open_run(run_dir, config_lib.load("ppo_cartpole", ["seeds=3"]))
    assert snapshot(run_dir) == before
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"files jaxrl did not write \(notes.txt\)"):
        open_run(run_dir, config)
    (run_dir / "notes.txt").unlink()
    assert open_run(run_dir, resume=True) == (config, False)  # --resume of it starts over too
    assert "starting it over" in capsys.readouterr().err
    assert list(run_dir.iterdir()) == []


def test_metrics_are_cut_to_the_checkpoint_and_a_torn_last_row_is_dropped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("update,env_steps,member\n1,128,0\n2,256,0\n3,384,0\n4,5")  # killed mid-row
    assert truncate_metrics(path, 2) == ["update", "env_steps", "member"]
    assert path.read_text().splitlines() == ["update,env_steps,member", "1,128,0", "2,256,0"]


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00garbage",
    b"update,env_steps\n1,2\nnot,a,row,of,this,table\n",
    b"step,return\n1,2\n",
    b"update,return\nten,3\n",
])
def test_a_metrics_file_that_is_not_a_table_is_refused_untouched(tmp_path, content):
    path = tmp_path / "metrics.csv"
    path.write_bytes(content)
    with pytest.raises(RunDirError, match="move it away to resume") as error:
        truncate_metrics(path, 5)
    assert "\n" not in str(error.value)
    assert path.read_bytes() == content


def save_three(directory: Path, config: config_lib.Config, keep_last: int = 5) -> Checkpointer:
    checkpointer = Checkpointer(directory, keep_last=keep_last)
    for step in (1, 2, 3):
        checkpointer.save(step, {"w": np.full(4, float(step))}, {"config": plain_config(config)}, score=-step)
    return checkpointer


def damage(directory: Path, step: int) -> None:
    """Cuts every array data file of checkpoint `step` short."""
    for data in [p for p in (directory / str(step) / "state").rglob("*") if p.is_file() and p.parent.name == "d"]:
        data.write_bytes(data.read_bytes()[: max(1, data.stat().st_size // 3)])


ABSTRACT = {"w": np.zeros(4)}


def test_a_damaged_checkpoint_is_set_aside_only_once_an_older_one_restores(tmp_path):
    config = config_lib.load("ppo_cartpole")
    directory = tmp_path / "checkpoints"
    save_three(directory, config).close()
    damage(directory, 3)
    checkpointer = Checkpointer(directory)
    with pytest.warns(UserWarning, match="unreadable"):
        restored = checkpointer.restore_latest(ABSTRACT, written_by(config))
    assert restored.step == 2 and np.asarray(restored.state["w"]).tolist() == [2.0] * 4
    assert checkpointer.steps() == [1, 2] and len(list((directory / "corrupt").iterdir())) == 1
    checkpointer.close()


def test_when_no_checkpoint_restores_nothing_is_moved(tmp_path):
    config = config_lib.load("ppo_cartpole")
    directory = tmp_path / "checkpoints"
    save_three(directory, config).close()
    for step in (1, 2, 3):
        damage(directory, step)
    before = snapshot(directory)
    checkpointer = Checkpointer(directory)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="nothing was moved") as error:
        checkpointer.restore_latest(ABSTRACT, written_by(config))
    checkpointer.close()
    assert "\n" not in str(error.value) and snapshot(directory) == before


def test_a_checkpoint_of_another_config_is_a_config_error_and_moves_nothing(tmp_path):
    directory = tmp_path / "checkpoints"
    save_three(directory, config_lib.load("ppo_cartpole")).close()
    before = snapshot(directory)
    edited = config_lib.load("ppo_cartpole", ["algo.network.hidden_sizes=[32]", "eval.episodes=3"])
    checkpointer = Checkpointer(directory)
    with pytest.raises(ConfigError, match=r"checkpoint 3 was written by another config .*"
                                          r"algo.network.hidden_sizes \(\[64, 64\] -> \[32\]\)") as error:
        checkpointer.restore_latest(ABSTRACT, written_by(edited))
    assert "eval.episodes" not in str(error.value)  # eval.* may change on resume
    assert snapshot(directory) == before
    assert checkpointer.restore_latest(ABSTRACT, written_by(config_lib.load("ppo_cartpole"))).step == 3
    checkpointer.close()


def test_keep_last_holds_across_a_resume(tmp_path):
    """Scores are written to disk, so checkpoints from before a resume are pruned too."""
    config = config_lib.load("ppo_cartpole")
    directory = tmp_path / "checkpoints"
    save_three(directory, config, keep_last=2).close()
    checkpointer = Checkpointer(directory, keep_last=2)
    assert checkpointer.steps() == [1, 2, 3]  # 1 is the best score, 2 and 3 the last two
    checkpointer.save(4, {"w": np.zeros(4)}, {}, score=-4)
    checkpointer.save(5, {"w": np.zeros(4)}, {}, score=-5)
    assert checkpointer.steps() == [1, 4, 5]
    checkpointer.close()
    assert json.loads((directory / "5" / "metrics" / "metrics").read_text()) == {"score": -5.0}


def test_train_into_a_folder_it_did_not_create_refuses_and_removes_nothing(tmp_path):
    """The Python API: `train` into a finished run's folder is refused, and the cleanup that
    removes what a refused new run wrote never touches a folder that was there before."""
    from jaxrl.experiment.train import train

    config = config_lib.load("ppo_cartpole", ["seeds=1", "total_env_steps=4096", "env.num_envs=4",
                                              "algo.num_steps=32", "eval.episodes=1"])
    run_dir = tmp_path / "finished"
    write_unstarted_run(run_dir, config)
    (run_dir / "summary.json").write_text("{}\n")
    before = snapshot(run_dir)
    with pytest.raises(RunDirError, match="already exists and is not empty"):
        train(config, run_dir, progress=False)
    assert snapshot(run_dir) == before


def test_a_record_torn_by_a_kill_is_dropped_before_appending_again(tmp_path):
    from jaxrl.experiment.run_dir import append_jsonl, drop_torn_line

    path = tmp_path / "timings.jsonl"
    path.write_text('{"event": "chunk", "update": 1}\n{"event": "ch')
    drop_torn_line(path)
    append_jsonl(path, {"event": "resume"})
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["chunk", "resume"]
