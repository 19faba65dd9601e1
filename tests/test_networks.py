"""Torsos and the actor-critic: shapes for every torso, shared vs separate, and the
per-seed orthogonal init giving the same parameters as flax's own, batched or not."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.algos import ppo
from jaxrl.envs import make_vec
from jaxrl.networks import ActorCritic, MinAtarCNN, NatureCNN, NetworkConfig, PolicySpec, orthogonal

pytestmark = pytest.mark.timeout(300)


def test_nature_cnn_reads_uint8_frames():
    frames = jnp.zeros((2, 84, 84, 4), jnp.uint8)
    params = NatureCNN().init(jax.random.PRNGKey(0), frames)
    out = NatureCNN().apply(params, frames)
    assert out.shape == (2, 512)
    # three conv layers as patch + dense kernels (k*k*C_in -> C_out), then the 512 dense layer
    kernels = [v["kernel"].shape for k, v in params["params"].items() if k.startswith("Dense")]
    assert kernels == [(8 * 8 * 4, 32), (4 * 4 * 32, 64), (3 * 3 * 64, 64)]
    assert params["params"]["MLP_0"]["Dense_0"]["kernel"].shape == (7 * 7 * 64, 512)


def test_patch_convolution_equals_a_real_convolution():
    """The patch + dense layer computes exactly `lax.conv` with the kernel reshaped."""
    from jaxrl.networks.modules import _conv_stack

    class OneConv(nn.Module):
        @nn.compact
        def __call__(self, x):
            return _conv_stack(x, [(5, 3, 2)], lambda y: y)

    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
    params = OneConv().init(jax.random.PRNGKey(1), x)
    ours = OneConv().apply(params, x)
    # patches are ordered (C_in, kh, kw); rebuild an HWIO kernel from the dense kernel
    dense = params["params"]["Dense_0"]
    hwio = dense["kernel"].reshape(3, 3, 3, 5).transpose(1, 2, 0, 3)
    conv = jax.lax.conv_general_dilated(x, hwio, (2, 2), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(ours, (conv + dense["bias"]).reshape(2, -1), rtol=1e-5, atol=1e-5)


def test_minatar_cnn_on_boolean_grids():
    grids = jnp.zeros((3, 10, 10, 4), bool)
    params = MinAtarCNN((128,)).init(jax.random.PRNGKey(0), grids)
    assert MinAtarCNN((128,)).apply(params, grids).shape == (3, 128)


@pytest.mark.parametrize("shared, torsos", [(False, 2), (True, 1)])
def test_actor_critic_shared_or_separate(shared, torsos):
    net = ActorCritic(NetworkConfig(hidden_sizes=(16,), shared=shared), PolicySpec("categorical", 3))
    obs = jnp.ones((5, 4))
    params = net.init(jax.random.PRNGKey(0), obs)
    assert sum(k.endswith("_torso") for k in params["params"]) == torsos
    dist, value = net.apply(params, obs)
    assert dist.logits.shape == (5, 3) and value.shape == (5,)
    np.testing.assert_allclose(net.apply(params, obs, method=ActorCritic.value), value, rtol=1e-6)


def test_sequential_orthogonal_matches_flax_and_is_orthogonal():
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    ours = jax.jit(jax.vmap(lambda k: orthogonal(2.0)(k, (8, 6))))(keys)
    flax_init = nn.initializers.orthogonal(2.0)
    theirs = np.stack([flax_init(k, (8, 6)) for k in keys])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    gram = np.einsum("bij,bik->bjk", ours, ours)  # columns orthogonal, norm 2
    np.testing.assert_allclose(gram, np.broadcast_to(4.0 * np.eye(6), gram.shape), atol=1e-4)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("game", ["breakout", "asterix", "freeway", "spaceinvaders"])
def test_shipped_minatar_ppo_configs_take_an_update(game):
    """Each shipped MinAtar PPO config builds its env and CNN and takes a PPO update (a smoke
    budget: 4 envs x 8 steps; the full 1e7 steps are GPU rows of `jaxrl bench quality`)."""
    from jaxrl import config as config_lib
    from jaxrl.experiment import build

    config = config_lib.load(f"configs/ppo_minatar_{game}.yaml",
                             ["env.num_envs=4", "algo.num_steps=8", "algo.num_minibatches=2"])
    algo = build(config).algo
    state = jax.jit(algo.init)(jax.random.PRNGKey(0), algo.default_hparams)
    state, metrics = jax.jit(algo.update)(state, algo.default_hparams)
    assert state.obs.shape[:3] == (4, 10, 10)
    assert all(np.isfinite(float(v)) for k, v in metrics.items() if not k.startswith("episode"))
