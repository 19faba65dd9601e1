"""Config validation: every bad input is one ConfigError that names the key and the value."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrl import config as config_lib
from jaxrl.errors import ConfigError

pytestmark = pytest.mark.timeout(120)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = config_lib.load(path)
    assert config.algo.name == path.name.split("_")[0].replace("rainbow", "dqn")
    assert config.total_env_steps > 0


def test_shipped_configs_load_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_lib.shipped_configs() == sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    shipped = config_lib.load(CONFIGS / "ppo_cartpole.yaml")
    assert config_lib.load("ppo_cartpole") == config_lib.load("ppo_cartpole.yaml") == shipped
    (tmp_path / "ppo_cartpole.yaml").write_text((CONFIGS / "ppo_cartpole.yaml").read_text() + "seeds: 3\n")
    assert config_lib.load("ppo_cartpole.yaml").seeds == 3  # an existing file wins
    assert config_lib.load("ppo_cartpole").seeds == shipped.seeds


def test_unknown_config_names_list_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        config_lib.load("ppo_cartpol")
    message = str(error.value)
    assert "\n" not in message and "did you mean ppo_cartpole?" in message
    assert all(name in message for name in config_lib.shipped_configs())
    with pytest.raises(ConfigError, match="configs/ppo_cartpole.yaml does not exist; .*`ppo_cartpole`"):
        config_lib.load("configs/ppo_cartpole.yaml")  # no configs/ folder here


def test_shipped_config_loads_outside_the_repo(tmp_path):
    """A fresh interpreter in a folder with no configs/, jaxrl only on PYTHONPATH."""
    code = "from jaxrl import config; print(config.load('ppo_cartpole').env.id)"
    env = {**os.environ, "PYTHONPATH": str(CONFIGS.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CartPole-v1"


def test_dqn_reference_config_matches_reference_settings():
    """REFERENCES.md's DQN rows: 10 envs, buffer 1e4, batch 128, train every 10 steps after 1e4,
    target copy every 500, epsilon 1 -> 0.05 over 2.5e5, Adam 2.5e-4, MSE, 120-84 ReLU."""
    config = config_lib.load(CONFIGS / "dqn_cartpole_reference.yaml")
    algo = config.algo
    assert config.env.num_envs == 10 and config.total_env_steps == 500_000
    assert (algo.buffer_size, algo.batch_size, algo.learning_starts) == (10_000, 128, 10_000)
    assert algo.replay_ratio * config.env.num_envs * algo.rollout_steps == 1  # one step per 10
    assert (algo.target_update_every, algo.tau) == (500, 1.0)
    assert (algo.eps_start, algo.eps_end) == (1.0, 0.05)
    assert algo.eps_decay_fraction * config.total_env_steps == 250_000
    assert (algo.lr, algo.optimizer, algo.anneal_lr, algo.max_grad_norm, algo.loss, algo.gamma) == (
        2.5e-4, "adam", False, 0.0, "mse", 0.99)
    assert algo.network.hidden_sizes == (120, 84) and algo.network.activation == "relu"
    assert not any(getattr(algo, part) for part in ("double", "dueling", "prioritized",
                                                    "distributional", "noisy"))
    assert algo.n_steps == 1


def test_reference_config_matches_reference_settings():
    config = config_lib.load(CONFIGS / "ppo_cartpole_reference.yaml")
    algo = config.algo
    assert (config.env.num_envs, algo.num_steps, algo.num_epochs, algo.num_minibatches) == (4, 128, 4, 4)
    assert algo.network.hidden_sizes == (64, 64) and algo.network.activation == "tanh"
    assert not algo.network.shared
    assert config.total_env_steps == 500_000
    assert (algo.lr, algo.gamma, algo.gae_lambda, algo.clip_eps, algo.ent_coef, algo.vf_coef,
            algo.max_grad_norm) == (2.5e-4, 0.99, 0.95, 0.2, 0.01, 0.5, 0.5)


def test_overrides_parse_numbers_and_nested_keys():
    config = config_lib.load(CONFIGS / "ppo_cartpole.yaml",
                             ["algo.lr=1e-3", "env.num_envs=8", "total_env_steps=2e5",
                              "algo.network.hidden_sizes=[32, 32]", "algo.anneal_lr=false"])
    assert config.algo.lr == pytest.approx(1e-3)
    assert config.env.num_envs == 8
    assert config.total_env_steps == 200_000 and isinstance(config.total_env_steps, int)
    assert config.algo.network.hidden_sizes == (32, 32)
    assert config.algo.anneal_lr is False


def test_dump_round_trips():
    config = config_lib.load(CONFIGS / "ppo_cartpole.yaml", ["seeds=3"])
    again = config_lib.from_dict(__import__("yaml").safe_load(config_lib.dump(config)))
    assert again == config


@pytest.mark.parametrize("overrides, words", [
    (["algo.lrr=1e-3"], ["unknown config key algo.lrr", "did you mean algo.lr"]),
    (["env.num_env=8"], ["env.num_env", "did you mean env.num_envs"]),
    (["totl_env_steps=10"], ["totl_env_steps", "total_env_steps"]),
    (["algo.lr=fast"], ["algo.lr must be a number", "fast"]),
    (["env.num_envs=2.5"], ["env.num_envs must be an integer", "2.5"]),
    (["algo.anneal_lr=maybe"], ["algo.anneal_lr must be true or false"]),
    (["algo.lr=-1"], ["algo.lr must be positive", "-1"]),
    (["algo.gamma=1.5"], ["algo.gamma must lie in [0, 1]", "1.5"]),
    (["env.num_envs=0"], ["env.num_envs must be at least 1", "0"]),
    (["seeds=0"], ["seeds must be at least 1"]),
    (["algo.name=dqnn"], ["unknown algorithm algo.name='dqnn'"]),
    (["algo.network.torso=resnet"], ["network.torso must be one of", "resnet"]),
    (["algo.network.hidden_sizes=64"], ["algo.network.hidden_sizes must be a list"]),
    (["eval.episodes=0"], ["eval.episodes must be at least 1"]),
    (["algo.lr"], ["must look like key=value"]),
])
def test_bad_values_name_key_and_value(overrides, words):
    with pytest.raises(ConfigError) as error:
        config_lib.load(CONFIGS / "ppo_cartpole.yaml", overrides)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config_lib.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_lib.load(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        config_lib.load(listy)


def test_minibatches_must_divide_batch():
    from jaxrl.experiment.train import build

    config = config_lib.load(CONFIGS / "ppo_cartpole.yaml", ["algo.num_minibatches=3"])
    with pytest.raises(ConfigError, match=r"algo.num_minibatches=3 must divide the batch .* = 512"):
        build(config)


@pytest.mark.parametrize("config_file, overrides, words", [
    ("ppo_cartpole.yaml", ["env.id=Pendulum-v1", "algo.policy=categorical"],
     r"policy=categorical needs a Discrete action space.*Box\(shape=\(1,\)\).*use policy: gaussian"),
    ("ppo_cartpole.yaml", ["algo.policy=beta"], r"policy=beta needs a continuous.*Discrete\(2\)"),
    ("ppo_pendulum.yaml", ["algo.policy=tanh_gaussian", "env.id=Acrobot-v1"],
     r"policy=tanh_gaussian needs a continuous.*Discrete\(3\)"),
    ("grpo_pendulum.yaml", ["env.id=CartPole-v1"], r"policy=gaussian needs a continuous"),
    ("dqn_cartpole.yaml", ["env.id=Pendulum-v1"], r"DQN picks among discrete actions.*Box"),
])
def test_algorithm_that_cannot_act_in_action_space(config_file, overrides, words):
    from jaxrl.experiment.train import build

    config = config_lib.load(CONFIGS / config_file, overrides)
    with pytest.raises(ConfigError, match=words):
        build(config)


def test_policy_keys_are_checked_when_loading():
    with pytest.raises(ConfigError, match="algo.policy must be one of auto, categorical"):
        config_lib.load(CONFIGS / "ppo_pendulum.yaml", ["algo.policy=normal"])
    with pytest.raises(ConfigError, match="algo.log_std must be one of parameter, state"):
        config_lib.load(CONFIGS / "ppo_pendulum.yaml", ["algo.log_std=learned"])


def test_cnn_torso_needs_images():
    from jaxrl.experiment.train import build

    config = config_lib.load(CONFIGS / "ppo_cartpole.yaml", ["algo.network.torso=nature_cnn"])
    with pytest.raises(ConfigError, match="needs image observations"):
        build(config)
