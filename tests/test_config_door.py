"""Inputs that once got past the door, each refused now in one line (ConfigError) before a run
folder exists: non-finite and extreme numbers, numbers past what the run can represent,
YAML and sweep bombs that a few hundred bytes make, binary and UTF-16 files, an inverted
range, learning_starts above the buffer."""

import time

import pytest

from jaxrl import config as config_lib
from jaxrl.errors import ConfigError

pytestmark = pytest.mark.timeout(60)


def refused(name, overrides, words):
    with pytest.raises(ConfigError) as error:
        config_lib.load(name, overrides)
    message = str(error.value)
    assert "\n" not in message and words in message, message
    return message


@pytest.mark.parametrize("name, override, key", [
    ("ppo_cartpole", "algo.lr=.nan", "algo.lr"),
    ("ppo_cartpole", "algo.lr=.inf", "algo.lr"),
    ("ppo_cartpole", "algo.lr=1e300", "algo.lr"),
    ("ppo_cartpole", "algo.ent_coef=.nan", "algo.ent_coef"),
    ("ppo_cartpole", "algo.clip_eps=.nan", "algo.clip_eps"),
    ("ppo_cartpole", "algo.max_grad_norm=.nan", "algo.max_grad_norm"),
    ("ppo_cartpole", "algo.vf_coef=-.inf", "algo.vf_coef"),
    ("ppo_pendulum", "algo.init_log_std=.nan", "algo.init_log_std"),
    ("rainbow_cartpole", "algo.v_max=.inf", "algo.v_max"),
    ("ppo_cartpole", "algo.lr=[1e-3, .nan]", "algo.lr"),
    ("ppo_cartpole", "env.step_timeout=.nan", "env.step_timeout"),
])
def test_non_finite_and_out_of_range_floats_are_refused(name, override, key):
    refused(name, [override], key)


@pytest.mark.parametrize("override, words", [
    ("seed=1180591620717411303424", "seed"),  # 2**70
    ("seed=-1", "seed"),
    ("total_env_steps=1e30", "total_env_steps"),
    ("eval.episodes=1e12", "eval.episodes"),
    ("seeds=1e9", "seeds"),
    ("algo.num_minibatches=99999999999999999999999", "algo.num_minibatches"),
])
def test_counts_past_what_a_run_can_hold_are_refused(override, words):
    refused("ppo_cartpole", [override], words)


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")  # 10^9 leaves from ~700 bytes
    assert bomb.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="write the values out") as error:
        config_lib.load(bomb)
    assert "\n" not in str(error.value) and time.perf_counter() - start < 10  # counted, not expanded


def test_deep_yaml_and_huge_files_are_refused(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as error:
        config_lib.load(deep)
    assert "\n" not in str(error.value)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (config_lib.MAX_CONFIG_BYTES + 10) + "\n")
    with pytest.raises(ConfigError, match="a config is at most") as error:
        config_lib.load(huge)


def test_a_sweep_grid_bomb_is_counted_before_it_is_built(tmp_path):
    bomb = tmp_path / "grid.yaml"
    bomb.write_text("algo: {name: ppo}\nenv: {id: CartPole-v1}\nsweep:\n"
                    "  algo.lr: {low: 1e-5, high: 1e-2, num: 4000, log: true}\n"
                    "  algo.ent_coef: {low: 0.0, high: 0.1, num: 4000}\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="settings") as error:
        config_lib.load(bomb)
    assert "\n" not in str(error.value) and time.perf_counter() - start < 10
    refused("ppo_cartpole", ["sweep={algo.lr: {low: 1e-5, high: 1e-2, num: 100000}}"], "4096 a range may hold")


def test_an_inverted_sweep_range_is_refused():
    refused("ppo_cartpole", ["sweep={algo.lr: {low: 1e-2, high: 1e-5, num: 3}}"], "algo.lr")


def test_learning_starts_above_the_buffer_is_refused():
    refused("dqn_cartpole", ["algo.buffer_size=1000", "algo.learning_starts=5000"], "learning_starts")


@pytest.mark.parametrize("content, words", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "not a text"),
])
def test_binary_config_files_are_refused_in_one_line(tmp_path, content, words):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        config_lib.load(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_utf16_config_files_are_read(tmp_path):
    text = config_lib.dump(config_lib.load("ppo_cartpole"))
    path = tmp_path / "utf16.yaml"
    path.write_bytes(text.encode("utf-16"))
    assert config_lib.load(path) == config_lib.load("ppo_cartpole")
