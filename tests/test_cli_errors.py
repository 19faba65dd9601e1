"""Bad command lines and broken run folders: one stderr line naming the problem and the fix,
exit code 2, no traceback, and every file the user gave left as it was.

Most checks call `jaxrl.cli.main` in-process (fast); two real subprocesses show the exit code
of the installed command. One tiny run, trained once for the module, serves eval, plot and export.
"""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["ppo_cartpole", "--seeds", "2", "--devices", "1", "--no-progress", "total_env_steps=256",
         "env.num_envs=4", "algo.num_steps=32", "algo.num_epochs=1", "algo.num_minibatches=2",
         "log_every_env_steps=256", "eval.episodes=1", "algo.network.hidden_sizes=[16, 16]",
         "env.normalize_obs=true"]  # as tests/test_torch_export.py, so the compile cache serves both


class _SameEnviron:
    """`main` sets JAX_NUM_CPU_DEVICES/XLA_FLAGS for the process; later tests' subprocesses must not inherit them."""

    def __enter__(self):
        self.saved = dict(os.environ)

    def __exit__(self, *exc):
        os.environ.clear()
        os.environ.update(self.saved)


@pytest.fixture(autouse=True)
def _same_environ():
    with _SameEnviron():
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished two-seed PPO CartPole run (config, metrics, summary, checkpoint)."""
    folder = tmp_path_factory.mktemp("runs") / "tiny"
    with _SameEnviron():
        assert main(["train", *TRAIN, "--run-dir", str(folder)]) == 0
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys, words: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], err
    return lines[0]


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


# ---- the command line itself -------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("args, words", [
    (["train", "ppo_cartpole", "--foo"], "jaxrl train: error: unrecognized arguments: --foo; see jaxrl train --help"),
    (["train", "ppo_cartpole", "--sedes", "2"], "did you mean --seeds?"),
    (["train", "ppo_cartpole", "--devices", "two"], "argument --devices: invalid int value: 'two'"),
    (["train", "ppo_cartpole", "--seeds"], "argument --seeds: expected one argument"),
    (["train", "ppo_cartpole", "algo.lr"], "override 'algo.lr' must look like key=value"),
    (["train", "ppo_cartpole", "--seeds", "2", "algo.lr"], "override 'algo.lr' must look like key=value"),
    (["eval"], "jaxrl eval: error: the following arguments are required: run_dir; see jaxrl eval --help"),
    (["eval", "somewhere", "--episodes", "1e12"], "argument --episodes: invalid int value: '1e12'"),
    (["export", "somewhere", "--seed-index", "x"], "jaxrl export: error: argument --seed-index"),
    (["plot", "somewhere", "--bogus"], "jaxrl plot: error: unrecognized arguments: --bogus"),
    (["nosuch"], "jaxrl: error: argument command: invalid choice: 'nosuch'"),
])
def test_a_bad_command_line_is_one_line_not_the_usage_block(tmp_path, capsys, args, words):
    run = tmp_path / "never"
    extra = ["--run-dir", str(run)] if args[0] == "train" else []
    assert main(args[:2] + extra + args[2:]) == 2
    one_line(capsys, words)
    assert not run.exists()


@pytest.mark.timeout(60)
def test_the_installed_command_exits_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    done = subprocess.run([sys.executable, "-m", "jaxrl", "train", "ppo_cartpole", "--foo", "--run-dir",
                           str(tmp_path / "never")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=50)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "jaxrl train: error: unrecognized arguments: --foo; see jaxrl train --help"], done.stderr
    assert not (tmp_path / "never").exists()


# ---- eval ----------------------------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("args, words", [
    (["--devices", "0"], "--devices must be at least 1, got 0"),
    (["--devices", "99"], "--devices 99 asks for more devices than the"),
    (["--episodes", "0"], "--episodes must lie between 1 and 1,000,000, got 0"),
    (["--episodes", "-3"], "--episodes must lie between 1 and 1,000,000, got -3"),
    (["--episodes", str(10**12)], f"--episodes must lie between 1 and 1,000,000, got {10**12}"),
    (["--max-steps", "0"], "--max-steps must lie between 1 and"),
])
def test_eval_refuses_counts_out_of_range(run_dir, capsys, args, words):
    before = files(run_dir)
    assert main(["eval", str(run_dir), *args]) == 2
    one_line(capsys, words)
    assert files(run_dir) == before  # no evaluations/ written


@pytest.mark.timeout(60)
def test_eval_on_more_devices_than_exist_exits_2_from_the_installed_command(run_dir):
    """A real process: --devices no longer splits the CPU into 99 devices for eval."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    done = subprocess.run([sys.executable, "-m", "jaxrl", "eval", str(run_dir), "--devices", "99"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=50)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--devices 99 asks for more devices than the" in lines[0], done.stderr
    assert not (run_dir / "evaluations").exists()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", [["eval"], ["export", "--out", "policy.pt"]])
def test_binary_config_of_a_run_is_one_line(run_dir, tmp_path, capsys, command):
    run = copy_run(run_dir, tmp_path)
    (run / "config.yaml").write_bytes(random.Random(0).randbytes(512))
    before = files(run)
    args = [command[0], str(run)] + [str(tmp_path / a) if a.endswith(".pt") else a for a in command[1:]]
    assert main(args) == 2
    one_line(capsys, f"config file {run / 'config.yaml'} is not YAML text")
    assert files(run) == before and not (tmp_path / "policy.pt").exists()


# ---- plot ----------------------------------------------------------------------------------

def _truncated(data: bytes) -> bytes:
    return data[:data.rindex(b",", 0, len(data) // 2)]  # the row it cuts lacks fields


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name, garbage, words", [
    ("metrics.csv", lambda data: random.Random(1).randbytes(4096), "metrics.csv is not a CSV text table"),
    ("metrics.csv", _truncated, "is cut short, has extra fields or holds a non-number"),
    ("metrics.csv", lambda data: b"a,b,c\n1,2,3\n", "metrics.csv has no env_steps or seed column"),
    ("metrics.csv", lambda data: data.replace(b"\n256,", b"\nlots,", 1), "holds a non-number"),
    ("summary.json", lambda data: random.Random(2).randbytes(4096), "summary.json is not JSON text"),
    ("summary.json", lambda data: data[: len(data) // 2], "summary.json is not JSON text"),
    ("summary.json", lambda data: b"[1, 2, 3]", "summary.json holds a JSON list, not an object"),
    ("summary.json", lambda data: b'{"final_eval": {"per_seed": "high"}}', "no list of numbers at final_eval.per_seed"),
])
def test_plot_of_a_run_with_a_garbage_file_names_the_file(run_dir, tmp_path, capsys, name, garbage, words):
    run = copy_run(run_dir, tmp_path)
    (run / name).write_bytes(garbage((run / name).read_bytes()))
    before = files(run)
    out = tmp_path / "figure.png"
    assert main(["plot", str(run), "--out", str(out)]) == 2
    assert str(run / name) in one_line(capsys, words)
    assert files(run) == before and not out.exists() and not out.with_suffix(".csv").exists()


@pytest.mark.timeout(30)
def test_plot_of_a_sound_run_writes_an_svg(run_dir, tmp_path, capsys):
    """The refusals above come from the broken files: the same run, intact, plots."""
    out = tmp_path / "figure.svg"
    assert main(["plot", str(run_dir), "--out", str(out)]) == 0
    assert out.read_bytes().lstrip().startswith(b"<?xml") and out.with_suffix(".csv").is_file()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("out, extra, words", [
    ("p.txt", [], "cannot write a figure with the extension .txt; end the name in one of .png, .pdf, .svg"),
    ("comparison", [], "cannot write a figure with no extension; end the name in one of .png, .pdf, .svg"),
    ("folder", [], "is a folder; give a figure file ending in .png, .pdf, .svg"),
    ("RUN/metrics.png", [], "would overwrite"),
    ("RUN/metrics.csv/fig.png", [], "metrics.csv is a file, not a folder"),
    ("p.png", ["--metric", "nope"], "has no column 'nope'; choose one of:"),
    ("p.png", ["--labels", "a", "b"], "--labels gave 2 names for 1 runs"),
    ("p.png", ["--grpo-groups"], "is a ppo run; --grpo-groups compares GRPO runs"),
])
def test_plot_output_and_options_are_checked_first(run_dir, tmp_path, capsys, out, extra, words):
    run = copy_run(run_dir, tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.png").write_bytes(b"mine")
    before, around = files(run), files(tmp_path / "folder")
    target = run / out.split("/", 1)[1] if out.startswith("RUN/") else tmp_path / out
    assert main(["plot", str(run), "--out", str(target), *extra]) == 2
    one_line(capsys, words)
    assert files(run) == before and files(tmp_path / "folder") == around
    assert not any(tmp_path.glob("p*")) and not (tmp_path / "comparison").exists()


# ---- export --------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_export_never_writes_over_a_folder_or_a_file_without_force(run_dir, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.pt").write_bytes(b"mine")
    assert main(["export", str(run_dir), "--out", str(folder)]) == 2
    one_line(capsys, f"--out {folder} is a folder")
    assert files(folder) == {"keep.pt": b"mine"}

    mine = folder / "keep.pt"
    assert main(["export", str(run_dir), "--out", str(mine)]) == 2
    one_line(capsys, "already exists; pass --force to replace it")
    assert mine.read_bytes() == b"mine"

    assert main(["export", str(run_dir), "--out", str(mine), "--force"]) == 0
    assert mine.read_bytes()[:2] == b"PK"  # TorchScript is a zip archive, written whole
    assert sorted(p.name for p in folder.iterdir()) == ["keep.pt"]  # no temporary file left behind
    assert not (run_dir / "export").exists()
