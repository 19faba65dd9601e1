"""Host envs: gymnasium envs in real worker processes, and training on them end to end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrl.envs.host import HostEnvError
from jaxrl.envs.host.gymnasium_pool import GymnasiumPool

gymnasium = pytest.importorskip("gymnasium")
pytest.importorskip("Box2D")

ROOT = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().split(")")[-1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return found


@pytest.mark.timeout(120)
def test_pool_steps_exactly_like_plain_gymnasium_envs():
    """Same seeds and actions: identical observations, rewards and flags, auto-reset in the
    step that ends an episode with the final observation kept, and episode statistics."""
    num_envs, steps = 4, 300
    reference = [gymnasium.make("LunarLander-v3") for _ in range(num_envs)]
    running = np.zeros(num_envs)
    ended = 0
    with GymnasiumPool("LunarLander-v3", num_envs, num_workers=2) as pool:
        assert pool.num_workers == 2
        obs = pool.reset(np.arange(10, 10 + num_envs))
        expected = np.stack([env.reset(seed=10 + i)[0] for i, env in enumerate(reference)])
        np.testing.assert_array_equal(obs, expected)
        rng = np.random.default_rng(0)
        for _ in range(steps):
            actions = rng.integers(0, 4, num_envs)
            result = pool.step(actions)
            for i, env in enumerate(reference):
                next_obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
                running[i] += reward
                np.testing.assert_array_equal(result.final_obs[i], next_obs)
                assert result.reward[i] == np.float32(reward)
                assert (result.terminated[i], result.truncated[i]) == (terminated, truncated)
                assert result.episode_done[i] == (terminated or truncated)
                if terminated or truncated:
                    ended += 1
                    assert result.episode_return[i] == pytest.approx(running[i], rel=1e-5, abs=1e-3)
                    running[i] = 0.0
                    next_obs, _ = env.reset()
                    assert not np.array_equal(result.obs[i], result.final_obs[i])
                np.testing.assert_array_equal(result.obs[i], next_obs)
    assert ended >= 4  # random LunarLander episodes last about 100 steps


@pytest.mark.timeout(60)
@pytest.mark.parametrize("env_id, words", [
    ("host_test_envs:Raising-v0", "raised RuntimeError: boom at step 5 in env"),
    ("host_test_envs:Dying-v0", "died during 'step' (exit code -9)"),
    ("host_test_envs:Hanging-v0", "did not answer 'step' within 2 s (hung)"),
])
def test_a_failing_worker_gives_one_clear_error_and_no_leftover_processes(env_id, words):
    pool = GymnasiumPool(env_id, 4, num_workers=2, timeout=2.0)
    pids = [p.pid for p in pool._processes]
    pool.reset(np.arange(4))
    start = time.monotonic()
    with pytest.raises(HostEnvError) as error:
        for _ in range(10):
            pool.step(np.zeros(4, np.int64))
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert env_id in message and words in message, message
    assert "env worker 0 (envs 0-1)" in message or "env worker 1 (envs 2-3)" in message, message
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(HostEnvError, match="closed"):
        pool.step(np.zeros(4, np.int64))


@pytest.mark.timeout(60)
def test_bad_ids_and_missing_extras_are_named():
    with pytest.raises(HostEnvError, match=r"unknown gymnasium env id 'LunarLandr-v3'.*LunarLander-v3"):
        GymnasiumPool("LunarLandr-v3", 2)
    with pytest.raises(HostEnvError, match=r'needs a package that is not installed.*pip install "jaxrl\[box2d\]"'):
        GymnasiumPool("host_test_envs:NeedsBox2D-v0", 2)


def jaxrl(*args: str, timeout: int = 300, wait: bool = True):
    script = Path(sys.executable).with_name("jaxrl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxrl"]
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    if not wait:  # Ctrl-C as from a terminal: test runners (pytest-xdist) may ignore SIGINT,
        # and a child inherits an ignored signal, so give it back its default action
        return subprocess.Popen(command + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)


TINY_DQN = ["--seeds", "2", "total_env_steps=1200", "log_every_env_steps=400", "env.num_envs=2",
            "env.num_workers=1", "algo.buffer_size=1000", "algo.learning_starts=200",
            "algo.rollout_steps=2", "algo.replay_ratio=0.25", "eval.episodes=2", "eval.max_steps=100",
            "eval.every_env_steps=0", "checkpoint.every_env_steps=400"]


@pytest.fixture(scope="module")
def lunar_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("host") / "dqn_lunar"
    return run_dir, jaxrl("train", "configs/dqn_lunarlander.yaml", "--run-dir", str(run_dir),
                          "--no-progress", *TINY_DQN)


@pytest.mark.timeout(300)
def test_dqn_on_lunarlander_through_the_cli(lunar_run):
    run_dir, done = lunar_run
    assert done.returncode == 0, done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] == "LunarLander-v3" and summary["seeds"] == 2
    assert len(summary["final_eval"]["per_seed"]) == 2
    chunks = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
    chunks = [c for c in chunks if c["event"] == "chunk"]
    assert len(chunks) == 3
    for chunk in chunks:  # host envs: waiting on envs, on the device and host work reported apart
        shares = [chunk["env_wait_seconds"], chunk["device_wait_seconds"], chunk["host_seconds"]]
        assert all(share > 0 for share in shares), chunk
        assert sum(shares) == pytest.approx(chunk["seconds"], rel=0.05, abs=0.02), chunk
    evaluated = jaxrl("eval", str(run_dir), "--episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "seed    1" in evaluated.stdout
    played = jaxrl("eval", str(run_dir), "--video", "--trace", "--seed-index", "1", "--max-steps", "20")
    assert played.returncode == 0, played.stderr
    assert "q_values" in played.stdout and "after 20 steps" in played.stdout  # the trace
    gifs = list((run_dir / "videos").glob("seed1_return*.gif"))  # gymnasium's rgb_array frames
    assert len(gifs) == 1 and gifs[0].read_bytes()[:6] == b"GIF89a"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args, words", [
    (["env.id=LunarLandr-v3"], "unknown env id 'LunarLandr-v3'"),
    (["env.backend=envpool", "env.id=NoSuchEnv-v0"], "unknown envpool env id"),
    (["env.normalize_obs=true", "env.host_groups=2"], "env.host_groups=2 with env.normalize_obs"),
    (["env.backend=envpool", "env.frame_stack=2"], "EnvPool stacks frames only for its Atari envs"),
    (["env.frame_stack=0"], "env.frame_stack must be the number of observations stacked"),
    (["env.id=host_test_envs:NeedsBox2D-v0"], 'pip install "jaxrl[box2d]"'),
])
def test_bad_host_env_input_is_one_line_and_exit_2(tmp_path, args, words):
    pytest.importorskip("envpool")
    done = jaxrl("train", "configs/dqn_lunarlander.yaml", "--run-dir", str(tmp_path / "r"), *args)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()


@pytest.mark.timeout(300)
def test_ctrl_c_stops_training_and_leaves_no_worker_processes(tmp_path):
    process = jaxrl("train", "configs/dqn_lunarlander.yaml", "--run-dir", str(tmp_path / "r"),
                    "--no-progress", "--seeds", "2", "env.num_envs=2", "env.num_workers=2", wait=False)
    deadline, workers = time.monotonic() + 240, []
    while time.monotonic() < deadline:  # until training runs (compiled, envs stepping)
        time.sleep(0.5)
        workers = [pid for pid in children(process.pid) if alive(pid)]  # env workers (and
        # multiprocessing's resource tracker): none may outlive the run
        if (tmp_path / "r" / "timings.jsonl").exists() and len(workers) >= 3:
            break
    assert len(workers) >= 3, "the run never started its env workers"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert "interrupted" in stderr, stderr
    assert process.returncode != 0
    time.sleep(1.0)
    assert not any(alive(pid) for pid in workers), stderr


@pytest.mark.timeout(300)
def test_a_killed_host_run_resumes_from_fresh_env_resets(tmp_path):
    """Host env state lives in other processes: a resumed run restarts its envs from new
    seeds and continues from the checkpoint, with no metrics row lost or repeated, and with
    its normalisation statistics (checkpointed in the state) carried across the restart."""
    run_dir = tmp_path / "r"
    args = ["--run-dir", str(run_dir), "--no-progress", *TINY_DQN[:2], "total_env_steps=8000",
            "log_every_env_steps=400", "checkpoint.every_env_steps=400", "env.num_envs=2",
            "env.num_workers=1", "algo.buffer_size=1000", "algo.learning_starts=200",
            "algo.n_steps=3", "eval.episodes=1", "eval.max_steps=50", "env.normalize_obs=true",
            "env.normalize_reward=true"]
    process = jaxrl("train", "configs/dqn_lunarlander.yaml", *args, wait=False)
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        time.sleep(0.5)
        timings = run_dir / "timings.jsonl"
        if timings.exists() and timings.read_text().count('"checkpoint"') >= 2:
            break
    process.kill()
    process.communicate(timeout=30)
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"
    resumed = jaxrl("train", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
    assert any(e["event"] == "resume" and e["from_update"] > 0 for e in events)
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    keys = [tuple(row.split(",")[i] for i in (0, 2)) for row in rows]  # (env_steps, seed)
    assert len(keys) == len(set(keys)) == 2 * (8000 // 400)
    # every step of both envs updated each member's statistics once, the first resets too; the
    # resumed run's fresh resets keep them, as a reset of a jittable env does
    from jaxrl.experiment.assemble import host_stand_in
    from jaxrl.experiment.evaluate import load_run
    from jaxrl.interop.torch_export import obs_stats_of

    config, built, pop, restored = load_run(run_dir)
    pop.close()
    env = host_stand_in(config, built.host, 2)[0]
    for member in range(2):
        state = jax.tree.map(lambda x: np.asarray(x)[member], built.algo.env_state(restored.state))
        stats = obs_stats_of(env, state)
        assert stats is not None and np.isfinite(stats.mean).all() and (stats.var > 0).all()
        assert state.inner.stats.count == pytest.approx(1e-4 + 2 * (1 + 8000 // 2), rel=1e-6)


@pytest.mark.timeout(300)
def test_a_mujoco_config_trains_with_normalisation_and_draws_headless(tmp_path):
    """gymnasium's MuJoCo v5 envs (extra `mujoco`) through the host path with the shipped
    CleanRL-style config cut to a few updates; the video draws through EGL with no display."""
    pytest.importorskip("mujoco")
    run_dir = tmp_path / "hopper"
    done = jaxrl("train", "configs/ppo_hopper.yaml", "--run-dir", str(run_dir), "--no-progress", "--seeds", "2",
                 "total_env_steps=1024", "algo.num_steps=256", "algo.num_minibatches=4", "algo.num_epochs=2",
                 "log_every_env_steps=512", "eval.episodes=2", "eval.max_steps=100",
                 "checkpoint.every_env_steps=512")
    assert done.returncode == 0, done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["final_eval"]["per_seed"]) == 2 and np.isfinite(summary["final_eval"]["per_seed"]).all()
    played = jaxrl("eval", str(run_dir), "--video", "--seed-index", "0", "--max-steps", "10")
    assert played.returncode == 0, played.stderr
    gifs = list((run_dir / "videos").glob("seed0_return*.gif"))
    assert len(gifs) == 1 and gifs[0].read_bytes()[:6] == b"GIF89a"


@pytest.mark.timeout(60)
def test_frame_stacks_fold_channel_last_and_start_from_the_first_observation():
    from jaxrl.env_worker import fold_frames, make_gymnasium_env

    frames = np.arange(3 * 2 * 2 * 3).reshape(3, 2, 2, 3)  # k=3 RGB frames -> [2, 2, 9], oldest first
    np.testing.assert_array_equal(fold_frames(frames)[..., 3:6], frames[1])
    np.testing.assert_array_equal(fold_frames(frames[..., 0]), np.moveaxis(frames[..., 0], 0, -1))
    env = make_gymnasium_env("LunarLander-v3", {}, 3)
    first, _ = env.reset(seed=0)
    assert first.shape == (24,) and env.observation_space.shape == (24,)
    np.testing.assert_array_equal(first[:8], first[16:])  # the episode starts with its first obs repeated
    second = env.step(0)[0]
    np.testing.assert_array_equal(second[:16], first[8:])  # shifted by one, the newest last
    env.close()


@pytest.mark.timeout(300)
def test_the_carracing_cnn_config_trains_a_smoke_budget(tmp_path):
    """CarRacing-v3 frames, 4 stacked channel-last, into the shared Nature CNN with a Beta policy."""
    done = jaxrl("train", "configs/ppo_carracing.yaml", "--run-dir", str(tmp_path / "car"), "--no-progress",
                 "--seeds", "1", "env.num_envs=2", "algo.num_steps=32", "algo.num_minibatches=2",
                 "algo.num_epochs=1", "total_env_steps=64", "eval.episodes=1", "eval.max_steps=20",
                 "checkpoint.every_env_steps=64")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "car" / "summary.json").read_text())
    assert summary["total_env_steps_per_seed"] == 64 and np.isfinite(summary["final_eval"]["mean"])
