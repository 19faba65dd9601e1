"""PyTorch export: every network kind gives flax's outputs and actions through a saved and
reloaded TorchScript file, and `jaxrl export` on a real run reproduces that run's policy."""

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.networks import Actor, ActorCritic, NetworkConfig, PolicySpec, QNetwork

torch = pytest.importorskip("torch")

from jaxrl.interop import ObsStats, save, to_torch  # noqa: E402  (needs torch)

from conftest import ROOT  # noqa: E402

# torch 2.13 marks torch.jit deprecated; TorchScript is still what loads without jaxrl
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

MLP = NetworkConfig(hidden_sizes=(16, 16), activation="tanh")
BOUNDS = dict(low=(-1.0, 0.0, -2.0), high=(2.0, 3.0, 2.0))
BATCH = 32


def _image(shape, dtype):
    return lambda rng: (rng.integers(0, 256, (BATCH,) + shape).astype(np.uint8) if dtype == "uint8"
                        else rng.random((BATCH,) + shape) > 0.5)


def _vector(size):
    return lambda rng: rng.normal(size=(BATCH, size)).astype(np.float32) * 2.0


# name: (flax network, observation sampler)
CASES = {
    "ppo_categorical": (ActorCritic(MLP, PolicySpec("categorical", 4)), _vector(5)),
    "ppo_categorical_shared": (ActorCritic(NetworkConfig("mlp", (16,), "relu", shared=True),
                                           PolicySpec("categorical", 3)), _vector(5)),
    "ppo_gaussian_parameter": (ActorCritic(MLP, PolicySpec("gaussian", 3, **BOUNDS)), _vector(5)),
    "ppo_gaussian_state": (ActorCritic(MLP, PolicySpec("gaussian", 3, **BOUNDS, log_std="state",
                                                       init_log_std=-0.5)), _vector(5)),
    "ppo_tanh_gaussian": (ActorCritic(NetworkConfig("mlp", (16,), "gelu"), PolicySpec(
        "tanh_gaussian", 3, **BOUNDS, log_std="state")), _vector(5)),
    "ppo_beta": (ActorCritic(NetworkConfig("mlp", (16,), "silu"), PolicySpec("beta", 3, **BOUNDS)), _vector(5)),
    "grpo_categorical": (Actor(MLP, PolicySpec("categorical", 3)), _vector(5)),
    "grpo_tanh_gaussian": (Actor(MLP, PolicySpec("tanh_gaussian", 3, **BOUNDS)), _vector(5)),
    "dqn": (QNetwork(MLP, 4), _vector(6)),
    "dqn_dueling": (QNetwork(MLP, 4, dueling=True), _vector(6)),
    "dqn_noisy": (QNetwork(MLP, 4, noisy=True), _vector(6)),
    "c51": (QNetwork(MLP, 4, num_atoms=11, v_min=-5.0, v_max=15.0), _vector(6)),
    "rainbow": (QNetwork(MLP, 4, dueling=True, noisy=True, num_atoms=11), _vector(6)),
    "nature_cnn_dqn": (QNetwork(NetworkConfig("nature_cnn", (16,), "relu"), 5, obs_ndim=3,
                                dueling=True), _image((36, 36, 4), "uint8")),
    "minatar_cnn_ppo": (ActorCritic(NetworkConfig("minatar_cnn", (16,), "relu"),
                                    PolicySpec("categorical", 3), obs_ndim=3),
                        _image((10, 10, 4), "bool")),
}


def random_params(network, obs: np.ndarray, seed: int = 0):
    """One member's params with the shapes `network.init` gives, drawn at random: every weight,
    bias and log-std non-trivial (flax's init leaves biases at zero and policy layers tiny),
    and no orthogonal init to run, which takes seconds per network on a CPU."""
    shapes = jax.eval_shape(network.init, {"params": jax.random.key(seed),
                                           "noise": jax.random.key(seed + 1)}, obs[:1])
    rng = np.random.default_rng(seed)

    def draw(leaf):
        scale = 1.0 / np.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else 0.3
        return jnp.asarray(rng.normal(size=leaf.shape).astype(np.float32) * scale)

    return jax.tree.map(draw, shapes)


def flax_outputs(network, params, obs: np.ndarray) -> dict[str, np.ndarray]:
    """What jaxrl computes: the torch module's outputs under the same names, and the action of
    jaxrl's deterministic `act` (greedy Q without noise, or `dist.to_env(dist.mode())`)."""
    if isinstance(network, QNetwork):
        out = jax.jit(lambda p, o: network.apply(p, o, False))(params, obs)
        return {"q_values": out.q_values, "logits": out.logits,
                "action": jnp.argmax(out.q_values, axis=-1)}

    def policy(p, o):
        dist, value = network.apply(p, o) if isinstance(network, ActorCritic) else (network.apply(p, o), None)
        fields = {k: getattr(dist, k) for k in ("logits", "mean", "log_std", "alpha", "beta")
                  if hasattr(dist, k)}
        return {**fields, **({} if value is None else {"value": value}),
                "action": dist.to_env(dist.mode())}

    return jax.jit(policy)(params, obs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each case's observations, flax's outputs and its exported module, reloaded from disk."""
    folder = tmp_path_factory.mktemp("exported")

    @functools.cache
    def make(name):
        network, sample = CASES[name]
        obs = sample(np.random.default_rng(1))
        params = random_params(network, obs)
        path = save(to_torch(network, params), folder / f"{name}.pt")
        return obs, flax_outputs(network, params, obs), torch.jit.load(str(path))

    return make


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CASES))
def test_exported_network_matches_flax(exported, name):
    obs, expected, module = exported(name)
    obs_t = torch.from_numpy(obs)
    out = module(obs_t)
    assert set(out) == set(expected) - {"action"}
    for key, value in out.items():
        np.testing.assert_allclose(value.numpy(), np.asarray(expected[key]), rtol=0, atol=1e-5,
                                   err_msg=key)
    action = module.act(obs_t)
    if jnp.issubdtype(expected["action"].dtype, jnp.integer):
        np.testing.assert_array_equal(action.numpy(), expected["action"])
    else:
        np.testing.assert_allclose(action.numpy(), expected["action"], rtol=0, atol=1e-5)
    # unbatched observations work too, as a single env step gives them
    np.testing.assert_allclose(module.act(obs_t[0]).numpy(), action[0].numpy(), rtol=0, atol=1e-6)


@pytest.mark.timeout(60)
def test_stochastic_actions_sample_the_distribution(exported):
    obs, expected, module = exported("ppo_categorical")
    obs_t = torch.from_numpy(obs[:1]).expand(4000, -1)
    counts = np.bincount(module.act(obs_t, False).numpy(), minlength=4) / 4000
    probs = np.asarray(jax.nn.softmax(expected["logits"][0]))
    np.testing.assert_allclose(counts, probs, atol=0.04)
    for name in ("ppo_beta", "ppo_tanh_gaussian", "ppo_gaussian_parameter"):
        obs, _, module = exported(name)
        actions = module.act(torch.from_numpy(obs), False).numpy()
        assert np.all(actions >= np.array(BOUNDS["low"])) and np.all(actions <= np.array(BOUNDS["high"]))
        assert not np.allclose(actions, module.act(torch.from_numpy(obs)).numpy())


@pytest.mark.timeout(60)
def test_observation_normalisation_is_built_in():
    from jaxrl.envs.wrappers import NormalizeObservation, RunningMeanStd

    network, sample = CASES["ppo_categorical"]
    raw = sample(np.random.default_rng(2)) * 5.0 + 3.0
    rng = np.random.default_rng(3)
    stats = RunningMeanStd(jnp.asarray(rng.normal(size=5), jnp.float32),
                           jnp.asarray(rng.random(5) + 0.1, jnp.float32), jnp.asarray(100.0))
    normalized = NormalizeObservation(None)._normalize(jnp.asarray(raw), stats)  # jaxrl's own
    params = random_params(network, raw)
    module = to_torch(network, params, obs_stats=ObsStats(stats.mean, stats.var))
    expected = flax_outputs(network, params, np.asarray(normalized))
    np.testing.assert_allclose(module(torch.from_numpy(raw))["logits"].numpy(), expected["logits"],
                               rtol=0, atol=1e-5)


@pytest.mark.timeout(30)
def test_population_params_are_refused():
    from jaxrl.errors import ConfigError

    network, sample = CASES["dqn"]
    params = random_params(network, sample(np.random.default_rng(0)))
    stacked = jax.tree.map(lambda x: jnp.stack([x, x]), params)
    with pytest.raises(ConfigError, match="one member's params"):
        to_torch(network, stacked)


@pytest.mark.timeout(30)
def test_missing_torch_is_a_config_error(monkeypatch):
    import jaxrl.interop
    from jaxrl.errors import ConfigError

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    monkeypatch.delitem(sys.modules, "jaxrl.interop.torch_export")
    with pytest.raises(ConfigError, match=r'pip install "jaxrl\[torch\]"'):
        jaxrl.interop.to_torch  # noqa: B018


# ---- a real run, end to end ------------------------------------------------------------------

TRAIN = ["configs/ppo_cartpole.yaml", "--seeds", "2", "--devices", "1", "--no-progress",
         "total_env_steps=256", "env.num_envs=4", "algo.num_steps=32", "algo.num_epochs=1",
         "algo.num_minibatches=2", "log_every_env_steps=256", "eval.episodes=1",
         "algo.network.hidden_sizes=[16, 16]", "env.normalize_obs=true"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A two-seed PPO CartPole run with observation normalisation, trained by the CLI."""
    folder = tmp_path_factory.mktemp("runs") / "tiny"
    done = subprocess.run([sys.executable, "-m", "jaxrl", "train", *TRAIN, "--run-dir", str(folder)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.timeout(120)
def test_jaxrl_export_reproduces_the_runs_policy(run_dir, capsys):
    from jaxrl.cli import main
    from jaxrl.envs.wrappers import NormalizeObservation
    from jaxrl.experiment.evaluate import load_run

    assert main(["export", str(run_dir), "--seed-index", "1"]) == 0
    path = run_dir / "export" / "seed1.pt"
    assert str(path) in capsys.readouterr().out
    policy = torch.jit.load(str(path))
    assert json.loads(policy.metadata)["seed_index"] == 1

    # jaxrl's own policy for seed 1, on the same raw observations normalised as the env does
    loaded = load_run(run_dir, seed_index=1)
    algo, state = loaded.built.algo, loaded.restored.state
    member = lambda tree: jax.tree.map(lambda x: np.asarray(x)[1], tree)  # noqa: E731
    params, env_state = member(algo.policy_params(state)), member(algo.env_state(state))
    while not hasattr(env_state, "stats"):
        env_state = env_state.inner
    raw = (np.random.default_rng(0).normal(size=(64, 4)) * [1.0, 1.0, 0.1, 1.0]).astype(np.float32)
    obs = NormalizeObservation(None)._normalize(jnp.asarray(raw), env_state.stats)
    actions = algo.act(params, obs, jax.random.key(0), True)
    probs = algo.explain(params, obs)["action_probs"]

    out = policy(torch.from_numpy(raw))
    np.testing.assert_array_equal(policy.act(torch.from_numpy(raw)).numpy(), actions)
    np.testing.assert_allclose(torch.softmax(out["logits"], -1).numpy(), probs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["value"].numpy(), algo.explain(params, obs)["value"],
                               rtol=0, atol=1e-5)
    # the seeds' policies differ, so this is seed 1's network and no other
    seed0 = jax.tree.map(lambda x: np.asarray(x)[0], algo.policy_params(state))
    assert not np.allclose(algo.explain(seed0, obs)["action_probs"], probs, atol=1e-3)


@pytest.mark.timeout(60)
def test_jaxrl_export_errors_are_one_line(run_dir, tmp_path, capsys):
    from jaxrl.cli import main

    for args, words in [([str(run_dir), "--seed-index", "2"], "--seed-index 2 is out of range"),
                        ([str(tmp_path / "missing")], "not a jaxrl run folder")]:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
