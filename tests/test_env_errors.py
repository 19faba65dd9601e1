"""Bad env settings are one clear line, raised before anything starts or is written.

Unknown or ill-typed `env.kwargs` for every backend (gymnax, jaxrl's own envs, brax,
gymnasium, EnvPool), unknown or malformed env ids, out-of-range env counts and timeouts, and
bad `--distributed` settings: each is a `jaxrl.errors.ConfigError` naming the key and the fix
(exit 2 and one stderr line from the CLI), before a worker process, jax.distributed or a run
folder exists. Fast on purpose: configs are built, never trained.
"""

import multiprocessing
import signal

import pytest

from jaxrl import config as config_lib
from jaxrl import distributed
from jaxrl.errors import ConfigError
from jaxrl.experiment.assemble import build


def build_error(*overrides: str) -> str:
    """The ConfigError message that loading and building ppo_cartpole with `overrides` raises."""
    with pytest.raises(ConfigError) as error:
        build(config_lib.load("ppo_cartpole", list(overrides)))
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides, words", [
    (["env.kwargs={foo: 1}"], "env.kwargs has unknown key 'foo' for gymnax CartPole-v1; it takes no kwargs"),
    (["env.id=Catch-bsuite", "env.kwargs={row: 5}"],
     "env.kwargs has unknown key 'row' for gymnax Catch-bsuite (did you mean 'rows'?); it takes: columns, rows"),
    (["env.id=MovieRec-v1", "env.kwargs={foo: 1, num_movies: 20}"],
     "env.kwargs has unknown key 'foo' for jaxrl MovieRec-v1; it takes: catalog_seed, num_candidates, "
     "num_genres, num_movies"),
    (["env.id=MovieRec-v1", "env.kwargs={num_movies: many}"],
     "env.kwargs.num_movies must be an int for jaxrl MovieRec-v1, got 'many' (str)"),
    (["env.id=MovieRec-v1", "env.kwargs={num_candidates: 99}"],  # the constructor's own check
     "jaxrl MovieRec-v1 refused env.kwargs {'num_candidates': 99}: ValueError: num_candidates must be"),
    (["env.id=ProbeConstantReward-v0", "env.kwargs={foo: 1}"], "unknown key 'foo' for jaxrl ProbeConstantReward-v0"),
])
def test_unknown_or_ill_typed_kwargs_of_jittable_envs(overrides, words):
    assert words in build_error(*overrides)


@pytest.mark.timeout(60)
def test_gymnasium_kwargs_are_refused_before_any_worker_starts():
    from jaxrl.envs.host.gymnasium_pool import GymnasiumPool

    assert build_error("env.id=Pendulum-v1", "env.backend=gymnasium", "env.kwargs={gravity: 9.8}") == (
        "env.kwargs has unknown key 'gravity' for gymnasium Pendulum-v1; it takes: "
        "disable_env_checker, g, max_episode_steps, render_mode")
    assert "env.kwargs.g must be a number for gymnasium Pendulum-v1, got 'strong' (str)" in build_error(
        "env.id=Pendulum-v1", "env.backend=gymnasium", "env.kwargs={g: strong}")
    # the pool itself (what training opens) refuses them too, with no worker process started
    with pytest.raises(ConfigError, match="unknown key 'foo' for gymnasium CartPole-v1"):
        GymnasiumPool("CartPole-v1", 4, num_workers=2, kwargs={"foo": 1})
    assert multiprocessing.active_children() == []


@pytest.mark.timeout(60)
def test_envpool_kwargs():
    pytest.importorskip("envpool")
    message = build_error("env.backend=envpool", "env.kwargs={max_episode_step: 100}")
    assert message.startswith("env.kwargs has unknown key 'max_episode_step' for envpool CartPole-v1 "
                              "(did you mean 'max_episode_steps'?); it takes: ")
    assert "env.kwargs.max_episode_steps must be an int for envpool CartPole-v1, got 'long' (str)" in \
        build_error("env.backend=envpool", "env.kwargs={max_episode_steps: long}")
    assert "unknown key 'num_envs'" in build_error("env.backend=envpool", "env.kwargs={num_envs: 3}")


@pytest.mark.timeout(120)
def test_brax_kwargs():
    pytest.importorskip("brax")
    from jaxrl import envs

    with pytest.raises(ConfigError) as error:
        envs.make("brax/ant", ctrl_cost=0.1)
    assert str(error.value).startswith("env.kwargs has unknown key 'ctrl_cost' for brax/ant "
                                       "(did you mean 'ctrl_cost_weight'?); it takes: action_repeat, backend")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides, words", [
    (["env.id="], "env.id is empty; give an env id such as CartPole-v1"),
    (["env.id=   "], "env.id is empty"),
    (["env.id=../../etc/passwd"], "not a file"),
    (["env.id=CartPole-v99"], "unknown env id 'CartPole-v99'"),
    (["env.id=CartPole-v99", "env.backend=jax"], "unknown env id 'CartPole-v99'. Did you mean CartPole-v1?"),
    (["env.id=CartPole-v99", "env.backend=gymnasium"],
     "unknown gymnasium env id 'CartPole-v99'. Did you mean CartPole-v1"),
    (["env.id=../../etc/passwd", "env.backend=gymnasium"], "unknown gymnasium env id '../../etc/passwd'"),
    (["env.id=Cartpole-v1"], "Did you mean CartPole-v1"),
    (["env.id=Breakout-Minatar"], "Close jittable ids: Breakout-MinAtar"),
])
def test_unknown_env_ids_suggest_known_ones(overrides, words):
    assert words in build_error(*overrides)


@pytest.mark.timeout(60)
def test_unknown_envpool_id_suggests():
    pytest.importorskip("envpool")
    assert "unknown envpool env id 'CartPole-v99'. Did you mean CartPole-v1" in build_error(
        "env.id=CartPole-v99", "env.backend=envpool")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("override, words", [
    ("env.num_envs=0", "env.num_envs must be at least 1 and at most 1,048,576"),
    ("env.num_envs=-3", "got -3"),
    ("env.num_envs=1000000000", "got 1,000,000,000"),
    ("env.num_workers=-1", "env.num_workers must be >= 0 (0: one per core) and at most 1024, got -1"),
    ("env.num_workers=1000000000", "at most 1024, got 1,000,000,000"),
    ("env.step_timeout=0", "env.step_timeout must be positive seconds, at most 86400 (a day), got 0"),
    ("env.step_timeout=-1", "env.step_timeout must be positive"),
    ("env.step_timeout=1e30", "at most 86400"),
    ("env.step_timeout=.nan", "env.step_timeout must be a finite number"),
    ("env.step_timeout=.inf", "env.step_timeout must be a finite number"),
])
def test_env_counts_and_timeouts_in_range(override, words):
    with pytest.raises(ConfigError) as error:
        config_lib.load("ppo_cartpole", [override])
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides, words", [
    (["env.host_groups=0"], "env.host_groups must be the number of groups a member's envs step in, at least 1"),
    (["env.host_groups=2"], "env.host_groups applies to host envs, but CartPole-v1 steps inside the compiled program"),
    (["env.device_turns=true"], "env.device_turns applies to host envs"),
    (["env.frame_stack=4"], "env.frame_stack applies to host envs"),
    (["env.backend=gymnasium", "env.num_envs=6", "env.host_groups=4"],
     "env.host_groups=4 must divide each member's 6 envs (env.num_envs); choose a divisor"),
    (["env.backend=gymnasium", "env.learn_while_stepping=true"],
     "env.learn_while_stepping lets a replay learner (dqn) learn while the envs step; ppo learns from the rollout "
     "it just collected; set it to false"),
])
def test_host_loop_options_that_cannot_apply_are_refused(overrides, words):
    message = build_error(*overrides)
    assert words in message, message


@pytest.mark.timeout(30)
@pytest.mark.parametrize("settings, words", [
    (("nohost:notaport", 2, 0), "--coordinator must be HOST:PORT with PORT a whole number in 1..65535"),
    (("127.0.0.1:0", 2, 0), "got '127.0.0.1:0'"),
    (("127.0.0.1:70000", 2, 0), "in 1..65535"),
    ((":1234", 2, 0), "must be HOST:PORT"),
    (("no-such-host.invalid:1234", 2, 0), "--coordinator host 'no-such-host.invalid' does not resolve"),
    (("127.0.0.1:1234", 0, 0), "--num-processes must lie in 1..65,536"),
    (("127.0.0.1:1234", -2, 0), "got -2"),
    (("127.0.0.1:1234", 10**12, 0), "got 1,000,000,000,000"),
    (("127.0.0.1:1234", 2, -1), "--process-id must lie in 0..1 for --num-processes 2, got -1"),
    (("127.0.0.1:1234", 2, 2), "got 2"),
    (("127.0.0.1:1234", 2, None), "go together"),
])
def test_distributed_settings_are_checked_before_jax_distributed(settings, words):
    import jax

    with pytest.raises(ConfigError) as error:
        distributed.initialize(*settings, timeout=5.0)
    assert words in str(error.value) and "\n" not in str(error.value)
    assert not jax.distributed.is_initialized()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_distributed_timeout_must_be_positive_and_finite(timeout):
    with pytest.raises(ConfigError, match="--distributed-timeout must be positive seconds"):
        distributed.check_settings(None, None, None, timeout)


@pytest.fixture
def in_process_cli(monkeypatch):
    """`jaxrl.cli.main`, run here: the environment and the Ctrl-C handler it sets are restored."""
    from jaxrl import cli

    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    handler = signal.getsignal(signal.SIGINT)
    yield cli.main
    signal.signal(signal.SIGINT, handler)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [
    ["ppo_cartpole", "env.id=MovieRec-v1", "env.kwargs={foo: 1}"],
    ["ppo_cartpole", "--distributed", "--coordinator", "nohost:notaport", "--num-processes", "2",
     "--process-id", "0"],
])
def test_cli_says_one_line_exits_2_and_creates_nothing(in_process_cli, capsys, tmp_path, args):
    run_dir = tmp_path / "run"
    rc = in_process_cli(["train", *args, "--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("jaxrl: error: ") and ("'foo'" in lines[0] or "nohost:notaport" in lines[0])
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []
