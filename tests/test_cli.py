"""The `jaxrl` command end to end, in a real subprocess, on a tiny budget."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from jaxrl.experiment.run_dir import read_metrics

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["total_env_steps=4096", "log_every_env_steps=1024", "eval.episodes=3",
        "eval.every_env_steps=2048", "env.num_envs=4", "algo.num_steps=32"]


def jaxrl(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("jaxrl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxrl"]
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "4", "--run-dir", str(run_dir),
                 *TINY, "algo.lr=1e-3", "loggers=[tensorboard,wandb]")
    return run_dir, done


def test_train_writes_complete_run_folder(tiny_run):
    run_dir, done = tiny_run
    assert done.returncode == 0, done.stderr
    for name in ("config.yaml", "metrics.csv", "summary.json", "timings.jsonl",
                 "plots/learning_curve.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "plots/learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # stdout: the final table and the run folder's path
    assert "IQM" in done.stdout and "95% CI" in done.stdout and str(run_dir) in done.stdout
    assert "steps/s" in done.stderr  # the progress bar


def test_resolved_config_is_written(tiny_run):
    run_dir, _ = tiny_run
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert written["seeds"] == 4 and written["algo"]["lr"] == pytest.approx(1e-3)
    assert written["algo"]["num_epochs"] == 4  # defaults are filled in
    assert written["env"]["num_envs"] == 4


def test_metrics_are_long_format_per_seed_per_point(tiny_run):
    run_dir, _ = tiny_run
    rows = read_metrics(run_dir / "metrics.csv")
    # 4096 steps / (4 envs x 32 steps) = 32 updates; 1024 steps per log -> 8 updates a chunk
    assert len(rows) == 4 * 4
    assert [int(r["seed"]) for r in rows[:4]] == [0, 1, 2, 3]
    assert sorted({int(r["env_steps"]) for r in rows}) == [1024, 2048, 3072, 4096]
    for column in ("episode_return", "episode_length", "policy_loss", "value_loss", "entropy",
                   "approx_kl", "sps", "eval_return"):
        assert column in rows[0]
    entropy = np.array([float(r["entropy"]) for r in rows])
    assert np.all((entropy > 0) & (entropy <= np.log(2) + 1e-6))
    evaluated = {int(r["env_steps"]) for r in rows if r["eval_return"]}
    assert evaluated == {2048, 4096}


def test_summary_has_statistics_and_versions(tiny_run):
    run_dir, _ = tiny_run
    summary = json.loads((run_dir / "summary.json").read_text())
    final = summary["final_eval"]
    assert len(final["per_seed"]) == 4
    per_seed = np.array(final["per_seed"])
    assert final["mean"] == pytest.approx(per_seed.mean(), abs=1e-3)
    assert final["min"] <= final["iqm_ci_low"] <= final["iqm"] <= final["iqm_ci_high"] <= final["max"]
    assert summary["steady_sps"] > 0 and summary["compile_seconds"] > 0
    for key in ("jax", "jaxlib", "device_kind"):
        assert summary["versions"][key]
    # by default the CLI splits the CPU into one device per core and shards the 4 seeds over them
    assert summary["devices"] == (2 if os.cpu_count() >= 2 else 1)
    timings = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
    assert [t["event"] for t in timings][0] == "init" and timings[-1]["event"] == "end"
    assert sum(t["event"] == "chunk" for t in timings) == 4


def test_existing_run_folder_is_never_overwritten(tiny_run):
    run_dir, _ = tiny_run
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--run-dir", str(run_dir), *TINY)
    assert done.returncode == 2
    assert "already exists" in done.stderr and "Traceback" not in done.stderr
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("args, words", [
    (["configs/ppo_cartpole.yaml", "algo.lrr=1"], "unknown config key algo.lrr"),
    (["configs/ppo_cartpole.yaml", "env.id=CartPol-v1"], "unknown env id 'CartPol-v1'"),
    (["configs/ppo_cartpole.yaml", "algo.policy=beta"], "policy=beta needs a continuous (Box)"),
    (["configs/ppo_cartpole.yaml", "algo.policy=gaussian"], "policy=gaussian needs a continuous"),
    (["configs/ppo_pendulum.yaml", "algo.policy=categorical"], "policy=categorical needs a Discrete"),
    (["configs/dqn_cartpole.yaml", "env.id=Pendulum-v1"], "DQN picks among discrete actions"),
    (["configs/grpo_cartpole.yaml", "algo.group_size=1"], "algo.group_size must be at least 2"),
    (["configs/ppo_cartpole.yaml", "algo.num_minibatches=7"], "algo.num_minibatches=7 must divide"),
    (["configs/ppo_cartpole.yaml", "env.num_envs=two"], "env.num_envs must be an integer"),
    (["configs/no_such.yaml"], "does not exist"),
    (["ppo_cartpol"], "did you mean ppo_cartpole?"),
    (["configs/ppo_cartpole.yaml", "--seeds", "0"], "seeds must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    run_dir = tmp_path / "never"
    done = jaxrl("train", *args, "--run-dir", str(run_dir), timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert not run_dir.exists()


def test_train_takes_a_shipped_config_by_name_outside_the_repo(tmp_path):
    """From a folder with no configs/ and jaxrl only on PYTHONPATH, `train ppo_cartpole` finds
    the config shipped inside the package."""
    env = {**{k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}, "PYTHONPATH": str(ROOT)}
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "jaxrl.cli", "train", "ppo_cartpole", "--seeds", "1", "--no-progress",
         "--run-dir", str(run_dir), "total_env_steps=256", "log_every_env_steps=128", "env.num_envs=4",
         "algo.num_steps=32", "eval.episodes=1", "eval.every_env_steps=0", "eval.max_steps=20"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "summary.json").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["env"]["id"] == "CartPole-v1"


def test_envs_lists_gymnax_and_probe_ids():
    done = jaxrl("envs", timeout=120)
    assert done.returncode == 0
    ids = done.stdout.split()
    assert {"CartPole-v1", "Breakout-MinAtar", "Acrobot-v1", "ProbeTimeLimit-v0"} <= set(ids)


def test_eval_reproduces_the_runs_final_evaluation(tiny_run):
    run_dir, _ = tiny_run
    summary = json.loads((run_dir / "summary.json").read_text())
    done = jaxrl("eval", str(run_dir))
    assert done.returncode == 0, done.stderr
    evaluations = sorted((run_dir / "evaluations").glob("*.json"))
    result = json.loads(evaluations[-1].read_text())
    assert result["per_seed"] == summary["final_eval"]["per_seed"]
    assert "IQM" in done.stdout and "WARNING" not in done.stderr
    one = jaxrl("eval", str(run_dir), "--seed-index", "2", "--stochastic", "--episodes", "2")
    assert one.returncode == 0, one.stderr
    result = json.loads(sorted((run_dir / "evaluations").glob("*.json"))[-1].read_text())
    assert result["seeds"] == [2] and not result["deterministic"]
    assert len(result["episode_returns"]["2"]) == 2


def test_eval_errors_are_clear(tmp_path, tiny_run):
    run_dir, _ = tiny_run
    no_checkpoints = tmp_path / "nock"
    no_checkpoints.mkdir()
    (no_checkpoints / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    for args, words in [([str(tmp_path / "missing")], "not a jaxrl run folder"),
                        ([str(no_checkpoints)], "no checkpoint"),
                        ([str(run_dir), "--seed-index", "9"], "--seed-index 9 is out of range")]:
        done = jaxrl("eval", *args, timeout=120)
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_eval_trace_prints_one_episode_step_by_step(tiny_run):
    run_dir, _ = tiny_run
    done = jaxrl("eval", str(run_dir), "--trace", "--seed-index", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "action_probs" in lines[0] and "value" in lines[0]
    steps = lines[1:-1]
    assert len(steps) >= 8  # CartPole cannot fail faster
    t, action, reward = steps[0].split()[:3]
    assert t == "0" and action in ("0", "1") and float(reward) == 1.0
    probs = [float(x) for x in steps[0].split("[")[1].split("]")[0].split()]
    assert len(probs) == 2 and abs(sum(probs) - 1.0) < 2e-3
    assert lines[-1].startswith("episode ") and f"after {len(steps)} steps, return {len(steps)}.00" in lines[-1]


def test_plot_compares_runs_and_matches_their_summaries(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    other = tmp_path / "other"
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "2", "--run-dir", str(other),
                 *TINY, "log_every_env_steps=2048", "algo.lr=3e-3")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "figures" / "compare.png"
    done = jaxrl("plot", str(run_dir), str(other), "--labels", "lr1e-3", "lr3e-3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = {r["run"]: r for r in read_metrics(out.with_name("compare_final.csv"))}
    for label, folder in (("lr1e-3", run_dir), ("lr3e-3", other)):
        expected = json.loads((folder / "summary.json").read_text())["final_eval"]
        for key in ("mean", "std", "iqm", "iqm_ci_low", "iqm_ci_high", "min", "max"):
            # the plot recomputes statistics from per-seed returns stored to 3 decimals
            assert float(final[label][key]) == pytest.approx(expected[key], rel=1e-5, abs=1e-3)
    curves = read_metrics(out.with_suffix(".csv"))
    # runs logged at different intervals keep their own env-step axes
    assert sorted({int(r["env_steps"]) for r in curves if r["run"] == "lr3e-3"}) == [2048, 4096]
    assert sorted({int(r["env_steps"]) for r in curves if r["run"] == "lr1e-3"}) == [1024, 2048, 3072, 4096]
    last = [r for r in curves if r["run"] == "lr1e-3" and r["env_steps"] == "4096"][0]
    raw = [float(r["episode_return"]) for r in read_metrics(run_dir / "metrics.csv")
           if r["env_steps"] == "4096" and r["episode_return"]]
    assert float(last["mean"]) == pytest.approx(np.mean(raw), rel=1e-4)
    bad = jaxrl("plot", str(run_dir), "--metric", "nope", "--out", str(out), timeout=120)
    assert bad.returncode == 2 and "has no column 'nope'" in bad.stderr


def read_tensorboard(folder: Path) -> tuple[dict[str, dict[int, float]], list[str]]:
    """Scalars {tag: {step: value}} and text summaries from TFRecord event files."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    texts: list[str] = []
    for path in folder.glob("events.out.tfevents.*"):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
                elif value.HasField("tensor"):
                    texts.extend(s.decode() for s in value.tensor.string_val)
    return scalars, texts


def test_tensorboard_logger_writes_per_seed_and_aggregate_curves(tiny_run):
    run_dir, _ = tiny_run
    scalars, texts = read_tensorboard(run_dir / "tensorboard")
    rows = read_metrics(run_dir / "metrics.csv")
    for step in (1024, 2048, 3072, 4096):
        values = np.array([float(r["value_loss"]) for r in rows if int(r["env_steps"]) == step])
        assert scalars["mean/value_loss"][step] == pytest.approx(values.mean(), rel=1e-4)
        assert scalars["max/value_loss"][step] == pytest.approx(values.max(), rel=1e-4)
        for seed in range(4):
            assert scalars[f"seed_{seed}/value_loss"][step] == pytest.approx(values[seed], rel=1e-4)
    assert set(scalars["mean/eval_return"]) == {2048, 4096}
    assert any("total_env_steps: 4096" in text for text in texts)  # the resolved config


def test_eval_video_writes_a_gif_with_one_frame_per_step(tiny_run):
    from PIL import Image

    run_dir, _ = tiny_run
    done = jaxrl("eval", str(run_dir), "--video", "--seed-index", "0", "--max-steps", "30")
    assert done.returncode == 0, done.stderr
    videos = list((run_dir / "videos").glob("seed0_return*.gif"))
    assert len(videos) == 1
    episode_return = float(videos[0].stem.split("return")[1])
    with Image.open(videos[0]) as gif:
        assert gif.n_frames == int(episode_return) <= 30  # CartPole pays 1 per step


def test_video_for_an_env_without_renderer_is_a_clear_error():
    from jaxrl.envs import make
    from jaxrl.errors import ConfigError
    from jaxrl.experiment.video import renderer_for

    env, _ = make("ProbeConstantReward-v0")
    with pytest.raises(ConfigError, match="ProbeConstantReward-v0 has no renderer"):
        renderer_for(env, "ProbeConstantReward-v0")
    assert renderer_for(make("CartPole-v1")[0], "CartPole-v1") == "gymnax"


def read_wandb(run_dir: Path) -> tuple[dict[int, dict], dict]:
    """History rows {step: row} and the config of an offline W&B run, read from its
    `.wandb` file (LevelDB-log framing: 32 KiB blocks of 7-byte-headed records)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    history: dict[int, dict] = {}
    config: dict = {}
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):
            continue
        record = wandb_internal_pb2.Record.FromString(pending)
        pending = b""
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                   for item in record.history.item}
            history[row["_step"]] = row
        elif record.WhichOneof("record_type") in ("config", "run"):
            updates = record.config.update if record.HasField("config") else record.run.config.update
            config.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                           for item in updates})
    return history, config


def test_wandb_offline_logger_writes_the_same_curves(tiny_run):
    run_dir, _ = tiny_run
    history, config = read_wandb(run_dir)
    rows = read_metrics(run_dir / "metrics.csv")
    assert sorted(history) == [1024, 2048, 3072, 4096]
    for step, logged in history.items():
        values = np.array([float(r["value_loss"]) for r in rows if int(r["env_steps"]) == step])
        assert logged["mean/value_loss"] == pytest.approx(values.mean(), rel=1e-4)
        assert logged["seed_3/value_loss"] == pytest.approx(values[3], rel=1e-4)
    assert "mean/eval_return" in history[4096] and "mean/eval_return" not in history[1024]
    assert config["total_env_steps"] == 4096 and config["algo"]["lr"] == pytest.approx(1e-3)


def test_periodic_evaluation_records_the_best_episode(tmp_path):
    from PIL import Image

    run_dir = tmp_path / "video_run"
    done = jaxrl("train", "configs/ppo_cartpole.yaml", "--seeds", "2", "--run-dir", str(run_dir),
                 *TINY, "eval.video=true", "eval.max_steps=12")
    assert done.returncode == 0, done.stderr
    videos = sorted(p.name for p in (run_dir / "videos").glob("*.gif"))
    assert [v.split("_seed")[0] for v in videos] == ["eval_step2048", "eval_step4096"]
    with Image.open(run_dir / "videos" / videos[-1]) as gif:
        assert gif.n_frames == int(float(videos[-1].split("return")[1][:-4])) <= 12
    no_renderer = tmp_path / "probe"
    bad = jaxrl("train", "configs/ppo_cartpole.yaml", "--run-dir", str(no_renderer), *TINY,
                "env.id=ProbeConstantReward-v0", "eval.video=true", timeout=120)
    assert bad.returncode == 2 and "has no renderer" in bad.stderr and not no_renderer.exists()


GC_SIGINT = """
import gc, os, signal
from jaxrl.runtime import catch_interrupts, raise_if_interrupted
catch_interrupts()
def callback(phase, info):  # Ctrl-C while the garbage collector runs a callback (JAX has one)
    if phase == "start":
        gc.callbacks.remove(callback)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10000):
            pass
gc.callbacks.append(callback)
gc.collect()
print("Python dropped the KeyboardInterrupt")
try:
    raise_if_interrupted()
except KeyboardInterrupt:
    print("the next check stops the run")
"""


def test_a_ctrl_c_that_python_drops_still_stops_the_run():
    from conftest import run_python

    done = run_python(GC_SIGINT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Python dropped the KeyboardInterrupt", "the next check stops the run"]
    assert "Exception ignored in" in done.stderr
