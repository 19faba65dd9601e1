"""Property-based checks of the door every input passes (Hypothesis): generated overrides —
wrong types, non-finite and extreme numbers, unknown keys at every depth, unicode, YAML
syntax — and generated config files of garbage bytes. For each, the config is either refused
with one line (`ConfigError`; from the CLI: exit 2, one stderr line, no traceback, no run
folder created, the given file unchanged) or it is a config whose every number is finite and
that the assembler builds or refuses in one line. The number of examples is bounded so the
suite fits CI."""

import contextlib
import io
import math
import os
import signal
from pathlib import Path

import jax
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402

from jaxrl import cli  # noqa: E402
from jaxrl import config as config_lib  # noqa: E402
from jaxrl.errors import JaxrlError  # noqa: E402
from jaxrl.experiment.assemble import build  # noqa: E402

pytestmark = pytest.mark.timeout(600)

CONFIGS = ("ppo_cartpole", "dqn_cartpole", "grpo_cartpole", "ppo_pendulum")
KEYS = {name: sorted(config_lib.flatten(config_lib.to_dict(config_lib.load(name)))) for name in CONFIGS}
SECTIONS = sorted({key.rsplit(".", 1)[0] for keys in KEYS.values() for key in keys if "." in key})

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2**80, max_value=2**80),
    st.sampled_from([".nan", ".inf", "-.inf", "1e300", "-1e300", "1e30", "2**70", "1e-320", "0x10", "1_000"]),
)
WORDS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "null", "~", "true", "yes", "[", "]", "{", "{a: 1}", "[1, [2]]", "&a [1]", "*a",
                     "!!python/object:os.system", "'", '"', ": :", "- x", "|", "\x00", "é", "🚀", "../../etc/passwd"]),
)
VALUES = st.one_of(NUMBERS.map(str), WORDS, st.lists(NUMBERS.map(str), max_size=3).map(lambda v: f"[{', '.join(v)}]"))
TINY = ["total_env_steps=4096", "env.num_envs=4", "algo.num_steps=32", "eval.episodes=2"]
IDENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)


@st.composite
def overrides(draw, name: str) -> list[str]:
    """One to three `key=value` overrides: known keys, unknown keys at every depth, or no `=`."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.one_of(
            st.sampled_from(KEYS[name]),
            st.builds(lambda s, k: f"{s}.{k}", st.sampled_from(SECTIONS), IDENT),  # unknown, in a section
            IDENT,  # unknown at the top
            st.builds(lambda k, s: f"{k}.{s}", st.sampled_from(KEYS[name]), IDENT),  # below a leaf
            st.text(max_size=6),  # anything at all
        ))
        value = draw(VALUES)
        out.append(draw(st.sampled_from([f"{key}={value}", f"{key}={value}", key, f"={value}"])))
    return out


def all_finite(data) -> bool:
    """Every number in a config's dict form is finite."""
    if isinstance(data, dict):
        return all(all_finite(v) for v in data.values())
    if isinstance(data, (list, tuple)):
        return all(all_finite(v) for v in data)
    return not isinstance(data, float) or math.isfinite(data)


def one_line(message: str) -> bool:
    return bool(message.strip()) and "\n" not in message.strip()


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_overrides_are_refused_in_one_line_or_give_a_finite_config(data):
    name = data.draw(st.sampled_from(CONFIGS))
    given_overrides = data.draw(overrides(name))
    try:
        config = config_lib.load(name, given_overrides)
    except JaxrlError as error:
        assert one_line(str(error)), repr(str(error))
        return
    assert all_finite(config_lib.to_dict(config))
    try:
        build(config)
    except JaxrlError as error:
        assert one_line(str(error)), repr(str(error))


def parses_as_size(text: str) -> bool:
    try:
        cli.parse_size(text)
    except JaxrlError:
        return False
    return True


def run_cli(args: list[str]) -> tuple[int, str]:
    """`jaxrl ...` in this process: its exit code and stderr (the same `main` the console script runs)."""
    err, environ, on_sigint = io.StringIO(), dict(os.environ), signal.getsignal(signal.SIGINT)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(args)
        except SystemExit as done:  # argparse
            code = done.code
        finally:  # main sets CPU defaults and a Ctrl-C handler for its process
            os.environ.clear()
            os.environ.update(environ)
            signal.signal(signal.SIGINT, on_sigint)
    return code, err.getvalue()


def refused(name: str, given_overrides: list[str]) -> bool:
    """Whether the config is refused before a run could start (what the CLI must then report)."""
    try:
        build(config_lib.load(name, given_overrides))
    except JaxrlError:
        return True
    return False


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_cli_refuses_generated_bad_overrides_in_one_line_and_creates_nothing(data, tmp_path_factory):
    name = data.draw(st.sampled_from(CONFIGS))
    given_overrides = data.draw(overrides(name))
    assume(refused(name, given_overrides))  # valid configs train: the learning tests cover those
    root = tmp_path_factory.mktemp("cli")
    config_file = root / "config.yaml"
    config_file.write_text(config_lib.dump(config_lib.load(name)))
    before = config_file.read_bytes()
    code, err = run_cli(["train", str(config_file), "--run-dir", str(root / "run"), "--no-progress",
                         *given_overrides])
    assert code == 2 and one_line(err) and "Traceback" not in err, err
    assert not (root / "run").exists() and config_file.read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["config.yaml"]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(content=st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.text(max_size=60).map(lambda t: t.encode("utf-16")),
    st.sampled_from([b"a: &a [*a]", b"- &x [*x, *x]\n", b"env: {id: [1, 2]}", b"seeds: .nan", b"{{{{",
                     b"!!binary AAAA", b"algo:\n  lr: 1e999\n", b"\xef\xbb\xbfseeds: 2\n"]),
))
def test_the_cli_refuses_a_garbage_config_file_in_one_line(content, tmp_path_factory):
    root = tmp_path_factory.mktemp("file")
    config_file = root / "garbage.yaml"
    config_file.write_bytes(content)
    try:
        build(config_lib.load(config_file))
        assume(False)  # a valid config after all (e.g. empty text gives the defaults)
    except JaxrlError:
        pass
    code, err = run_cli(["train", str(config_file), "--run-dir", str(root / "run"), "--no-progress"])
    assert code == 2 and one_line(err) and "Traceback" not in err, err
    assert not (root / "run").exists() and config_file.read_bytes() == content


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(flag=st.sampled_from(["--seed", "--seeds", "--devices", "--max-population-chunk", "--memory-limit"]),
       value=st.one_of(st.integers(-2**80, 2**80).map(str), WORDS))
def test_the_cli_refuses_generated_bad_flags_in_one_line(flag, value, tmp_path_factory):
    root = tmp_path_factory.mktemp("flag")
    try:
        int_value = int(value)
    except ValueError:
        int_value = None
    ok = {"--seed": lambda v: v is not None and 0 <= v < 2**32, "--seeds": lambda v: v is not None and 1 <= v <= 2**20,
          "--devices": lambda v: v is not None and 1 <= v <= jax.device_count(),
          "--max-population-chunk": lambda v: v is not None and v >= 1}
    assume(not (parses_as_size(value) if flag == "--memory-limit" else ok[flag](int_value)))  # valid: it would train
    code, err = run_cli(["train", "ppo_cartpole", "--run-dir", str(root / "run"), "--no-progress", flag, value,
                         *TINY])  # were a bad flag taken, the run would be short
    assert code == 2 and one_line(err) and "Traceback" not in err, (flag, value, err)
    assert not (root / "run").exists()
