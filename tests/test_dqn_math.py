"""DQN / Rainbow math against independent plain-python / numpy references.

n-step targets, the C51 projection, the Huber loss, the dueling aggregation, NoisyDense,
QNetwork's heads and the masked replay add are each checked against a loop-based reference
written here (not a vectorised copy of the library code).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.buffers import replay, sum_tree
from jaxrl.networks import NetworkConfig, NoisyDense, QNetwork, dueling_aggregate, scaled_noise
from jaxrl.rl.distributional import categorical_projection
from jaxrl.rl.losses import huber_loss
from jaxrl.rl.nstep import n_step_targets

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- n-step targets


def ref_n_step(rewards, terminated, truncated, gamma, n):
    """Loop reference over [L, E] arrays: per window start t and column e, walk forward."""
    length, columns = rewards.shape
    starts = length - n + 1
    returns = np.zeros((starts, columns))
    discounts = np.zeros((starts, columns))
    last = np.zeros((starts, columns), np.int64)
    for e in range(columns):
        for t in range(starts):
            total = 0.0
            for k in range(n):
                total += gamma**k * float(rewards[t + k, e])
                if terminated[t + k, e] or truncated[t + k, e]:
                    discount = 0.0 if terminated[t + k, e] else gamma ** (k + 1)
                    break
                discount = gamma**n if k == n - 1 else None
            returns[t, e] = total
            discounts[t, e] = discount
            last[t, e] = t + k
    return returns, discounts, last


def random_episode_flags(rng, length, columns):
    terminated = rng.random((length, columns)) < 0.15
    truncated = rng.random((length, columns)) < 0.15
    # pin a few cases: both flags at once, and ends at steps that are some window's last step
    terminated[4, 0] = truncated[4, 0] = True
    truncated[2, 1], terminated[2, 1] = True, False
    terminated[length - 1, 2] = True
    truncated[length - 1, 1] = True
    return terminated, truncated


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_n_step_targets_match_loop_reference(n, seed):
    rng = np.random.default_rng(seed)
    length, columns = 12, 3
    rewards = rng.normal(size=(length, columns)).astype(np.float32)
    terminated, truncated = random_episode_flags(rng, length, columns)
    gamma = float(rng.uniform(0.8, 1.0))
    out = n_step_targets(jnp.asarray(rewards), jnp.asarray(terminated), jnp.asarray(truncated),
                         gamma, n)
    ref_returns, ref_discounts, ref_last = ref_n_step(rewards, terminated, truncated, gamma, n)
    assert out.returns.shape == out.discounts.shape == out.last.shape == (length - n + 1, columns)
    np.testing.assert_allclose(np.asarray(out.returns), ref_returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.discounts), ref_discounts, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.last), ref_last)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_n_step_targets_1d_jit_and_array_gamma(n):
    """A single env ([L] arrays), under jit, with gamma passed as a traced array."""
    rng = np.random.default_rng(7)
    length = 9
    rewards = rng.normal(size=length).astype(np.float32)
    terminated = np.zeros(length, bool)
    truncated = np.zeros(length, bool)
    terminated[3], truncated[6] = True, True
    gamma = 0.93
    fn = jax.jit(n_step_targets, static_argnames="n")
    out = fn(jnp.asarray(rewards), jnp.asarray(terminated), jnp.asarray(truncated),
             jnp.float32(gamma), n=n)
    ref = ref_n_step(rewards[:, None], terminated[:, None], truncated[:, None], gamma, n)
    np.testing.assert_allclose(np.asarray(out.returns), ref[0][:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.discounts), ref[1][:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.last), ref[2][:, 0])


def test_n_step_targets_hand_example():
    # rewards [1, 2, 3, 4], terminated at step 2, truncated at step 3, gamma = 0.5
    rewards = jnp.array([1.0, 2.0, 3.0, 4.0])
    terminated = jnp.array([False, False, True, False])
    truncated = jnp.array([False, False, False, True])

    # n = 1: each step alone. Steps 0, 1: discount gamma; step 2 terminated: 0;
    # step 3 truncated: gamma^1 = 0.5 and it bootstraps from step 3's final observation.
    out = n_step_targets(rewards, terminated, truncated, 0.5, 1)
    np.testing.assert_allclose(np.asarray(out.returns), [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(np.asarray(out.discounts), [0.5, 0.5, 0.0, 0.5])
    np.testing.assert_array_equal(np.asarray(out.last), [0, 1, 2, 3])

    # n = 2:
    #   t=0: 1 + 0.5*2 = 2.0, no episode end -> discount 0.5^2 = 0.25, last = 1
    #   t=1: 2 + 0.5*3 = 3.5, step 2 terminated -> discount 0, last = 2
    #   t=2: step 2 terminated at once -> 3.0, discount 0, last = 2
    out = n_step_targets(rewards, terminated, truncated, 0.5, 2)
    np.testing.assert_allclose(np.asarray(out.returns), [2.0, 3.5, 3.0])
    np.testing.assert_allclose(np.asarray(out.discounts), [0.25, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(out.last), [1, 2, 2])

    # n = 3:
    #   t=0: 1 + 0.5*2 + 0.25*3 = 2.75, terminated at step 2 -> discount 0, last 2
    #   t=1: 2 + 0.5*3 = 3.5, terminated at step 2 -> discount 0, last 2
    out = n_step_targets(rewards, terminated, truncated, 0.5, 3)
    np.testing.assert_allclose(np.asarray(out.returns), [2.75, 3.5])
    np.testing.assert_allclose(np.asarray(out.discounts), [0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(out.last), [2, 2])

    # n = 4: t=0: the window stops at the termination at step 2 (step 3's reward is not added)
    out = n_step_targets(rewards, terminated, truncated, 0.5, 4)
    np.testing.assert_allclose(np.asarray(out.returns), [2.75])
    np.testing.assert_allclose(np.asarray(out.discounts), [0.0])
    np.testing.assert_array_equal(np.asarray(out.last), [2])


def test_n_step_targets_hand_example_truncation_inside_window():
    # rewards [1, 2, 3, 4], truncated (time limit) at step 1, gamma = 0.5, n = 3
    #   t=0: 1 + 0.5*2 = 2.0, truncated at k=1 -> discount 0.5^2 = 0.25, last = 1
    #   t=1: 2.0, truncated at k=0 -> discount 0.5, last = 1
    rewards = jnp.array([1.0, 2.0, 3.0, 4.0])
    terminated = jnp.zeros(4, bool)
    truncated = jnp.array([False, True, False, False])
    out = n_step_targets(rewards, terminated, truncated, 0.5, 3)
    np.testing.assert_allclose(np.asarray(out.returns), [2.0, 2.0])
    np.testing.assert_allclose(np.asarray(out.discounts), [0.25, 0.5])
    np.testing.assert_array_equal(np.asarray(out.last), [1, 1])
    # both flags at the same step: termination wins, discount 0
    out = n_step_targets(rewards, truncated, truncated, 0.5, 3)
    np.testing.assert_allclose(np.asarray(out.discounts), [0.0, 0.0])


@pytest.mark.parametrize("n", [0, 5, 9])
def test_n_step_targets_rejects_n_outside_the_sequence(n):
    zeros = jnp.zeros((4, 2))
    with pytest.raises(ValueError):
        n_step_targets(zeros, zeros.astype(bool), zeros.astype(bool), 0.9, n)


# --------------------------------------------------------------------------- C51 projection


def ref_projection(probs, returns, discounts, support):
    """The classic C51 algorithm: per atom, floor/ceil indices l, u and a linear mass split."""
    probs = np.asarray(probs, np.float64)
    support = np.asarray(support, np.float64)
    v_min, v_max, atoms = support[0], support[-1], len(support)
    dz = (v_max - v_min) / (atoms - 1)
    lead = probs.shape[:-1]
    out = np.zeros(probs.shape)
    for index in np.ndindex(*lead):
        r, d = float(returns[index]), float(discounts[index])
        m = np.zeros(atoms)
        for j in range(atoms):
            tz = min(max(r + d * support[j], v_min), v_max)
            b = (tz - v_min) / dz
            lo, hi = math.floor(b), math.ceil(b)
            if lo == hi:
                m[lo] += probs[index + (j,)]
            else:
                m[lo] += probs[index + (j,)] * (hi - b)
                m[hi] += probs[index + (j,)] * (b - lo)
        out[index] = m
    return out


def project(probs, returns, discounts, support):
    return np.asarray(categorical_projection(
        jnp.asarray(probs, jnp.float32), jnp.asarray(returns, jnp.float32),
        jnp.asarray(discounts, jnp.float32), jnp.asarray(support, jnp.float32)))


def test_c51_projection_random_batch_matches_classic_algorithm():
    rng = np.random.default_rng(0)
    atoms = 51
    support = np.linspace(-10.0, 10.0, atoms)
    gamma = 0.99
    probs = rng.dirichlet(np.ones(atoms), size=12)
    # returns: inside, and far outside [v_min, v_max] on both sides (everything clips)
    returns = np.array([0.0, 0.37, -3.3, 9.9, 25.0, -40.0, 1.234, -9.95, 100.0, -100.0, 5.5, 0.2])
    # discounts: gamma^n for several n, 1, and 0 (terminal transitions)
    discounts = np.array([gamma, gamma**3, 0.0, gamma**5, 1.0, gamma, 0.0, 0.5, 0.0, gamma**3,
                          2.0, 0.0])
    ours = project(probs, returns, discounts, support)
    np.testing.assert_allclose(ours, ref_projection(probs, returns, discounts, support),
                               atol=2e-5)
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)
    assert (ours >= 0).all()
    # every atom shifted past v_max / v_min: all mass on the edge atom
    np.testing.assert_allclose(ours[8], np.eye(atoms)[-1], atol=1e-6)
    np.testing.assert_allclose(ours[9], np.eye(atoms)[0], atol=1e-6)


@pytest.mark.parametrize("lead", [(5,), (3, 4)])
def test_c51_projection_batched_shapes(lead):
    rng = np.random.default_rng(sum(lead))
    atoms = 11
    support = np.linspace(-3.0, 7.0, atoms)
    probs = rng.dirichlet(np.ones(atoms), size=lead)
    returns = rng.normal(scale=5.0, size=lead)  # some beyond the support
    discounts = rng.choice([0.0, 0.9, 0.9**3], size=lead)
    ours = project(probs, returns, discounts, support)
    assert ours.shape == lead + (atoms,)
    np.testing.assert_allclose(ours, ref_projection(probs, returns, discounts, support), atol=2e-5)
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)


def test_c51_projection_terminal_and_exact_landing():
    atoms = 9
    support = np.linspace(-4.0, 4.0, atoms)  # dz = 1, atoms at integers
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(atoms), size=6)
    returns = np.array([2.3, 1.0, 0.0, 2.0, -7.0, 0.0])
    discounts = np.array([0.0, 1.0, 0.5, 0.0, 0.0, 1.0])
    ours = project(probs, returns, discounts, support)
    np.testing.assert_allclose(ours, ref_projection(probs, returns, discounts, support), atol=1e-6)

    # terminal, r = 2.3: b = 6.3 -> 0.7 on atom 6 (value 2), 0.3 on atom 7 (value 3)
    expected = np.zeros(atoms)
    expected[6], expected[7] = 0.7, 0.3
    np.testing.assert_allclose(ours[0], expected, atol=1e-6)
    # r = 1, d = 1: every shifted atom lands exactly on the next atom (l == u); the top two
    # atoms (3 + 1 and 4 + 1, clipped) both land on v_max
    expected = np.zeros(atoms)
    expected[1:] = probs[1, :-1]
    expected[-1] += probs[1, -1]
    np.testing.assert_allclose(ours[1], expected, atol=1e-6)
    # r = 0, d = 0.5: z = -4, -2, 0, 2, 4 map to atoms -2, -1, 0, 1, 2 exactly; odd z split halves
    expected = np.zeros(atoms)
    for j, z in enumerate(support):
        b = 0.5 * z + 4.0
        expected[math.floor(b)] += probs[2, j] * (1.0 if b == math.floor(b) else 0.5)
        if b != math.floor(b):
            expected[math.ceil(b)] += probs[2, j] * 0.5
    np.testing.assert_allclose(ours[2], expected, atol=1e-6)
    # terminal on an atom exactly: all mass on that atom; terminal below v_min: all on v_min
    np.testing.assert_allclose(ours[3], np.eye(atoms)[6], atol=1e-6)
    np.testing.assert_allclose(ours[4], np.eye(atoms)[0], atol=1e-6)
    # identity: r = 0, d = 1 leaves the distribution unchanged
    np.testing.assert_allclose(ours[5], probs[5], atol=1e-6)


# --------------------------------------------------------------------------- Huber


def ref_huber(x, delta):
    out = np.zeros(len(x))
    for i, e in enumerate(x):
        e = float(e)
        out[i] = 0.5 * e * e if abs(e) <= delta else delta * (abs(e) - 0.5 * delta)
    return out


@pytest.mark.parametrize("delta", [1.0, 0.5, 2.5])
def test_huber_matches_piecewise_formula(delta):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(scale=3.0, size=64),
                        [0.0, delta, -delta, 2 * delta, -10 * delta, 1e-3]]).astype(np.float32)
    ours = np.asarray(huber_loss(jnp.asarray(x), delta))
    np.testing.assert_allclose(ours, ref_huber(x, delta), rtol=1e-6, atol=1e-6)
    # gradient: x inside [-delta, delta], delta * sign(x) outside
    grad = np.asarray(jax.vmap(jax.grad(lambda e: huber_loss(e, delta)))(jnp.asarray(x)))
    np.testing.assert_allclose(grad, np.clip(x, -delta, delta), rtol=1e-6, atol=1e-6)


def test_huber_default_delta_is_one():
    x = jnp.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(np.asarray(huber_loss(x)), [2.5, 0.125, 0.0, 0.125, 2.5])


# --------------------------------------------------------------------------- dueling


@pytest.mark.parametrize("atoms", [1, 51])
def test_dueling_aggregate_matches_loops(atoms):
    rng = np.random.default_rng(atoms)
    batch, actions = 3, 4
    value = rng.normal(size=(batch, 1, atoms)).astype(np.float32)
    adv = rng.normal(size=(batch, actions, atoms)).astype(np.float32)
    ours = np.asarray(dueling_aggregate(jnp.asarray(value), jnp.asarray(adv)))
    ref = np.zeros((batch, actions, atoms))
    for b in range(batch):
        for k in range(atoms):
            mean = sum(float(adv[b, a, k]) for a in range(actions)) / actions
            for a in range(actions):
                ref[b, a, k] = value[b, 0, k] + adv[b, a, k] - mean
    assert ours.shape == (batch, actions, atoms)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    # identifiability: the advantages average to zero, so mean_a Q = V
    np.testing.assert_allclose((ours - value).mean(axis=1), 0.0, atol=1e-5)


# --------------------------------------------------------------------------- NoisyDense


def noisy_layer(fan_in=6, features=5, sigma0=0.5, seed=0):
    layer = NoisyDense(features, sigma0)
    x = jnp.zeros((1, fan_in))
    variables = layer.init({"params": jax.random.PRNGKey(seed), "noise": jax.random.PRNGKey(99)}, x)
    return layer, variables


def test_scaled_noise_is_signed_square_root_of_normals():
    key = jax.random.PRNGKey(4)
    x = np.asarray(jax.random.normal(key, (257,)), np.float64)
    ref = np.array([math.copysign(math.sqrt(abs(v)), v) for v in x])
    np.testing.assert_allclose(np.asarray(scaled_noise(key, 257)), ref, rtol=1e-6, atol=1e-7)


def test_noisy_dense_parameters():
    fan_in, features, sigma0 = 6, 5, 0.4
    _, variables = noisy_layer(fan_in, features, sigma0)
    params = variables["params"]
    assert set(params) == {"mu_kernel", "mu_bias", "sigma_kernel", "sigma_bias"}
    assert params["mu_kernel"].shape == params["sigma_kernel"].shape == (fan_in, features)
    assert params["mu_bias"].shape == params["sigma_bias"].shape == (features,)
    bound = 1.0 / math.sqrt(fan_in)
    for name in ("mu_kernel", "mu_bias"):
        values = np.asarray(params[name])
        assert (np.abs(values) <= bound).all() and np.unique(values).size == values.size
    for name in ("sigma_kernel", "sigma_bias"):
        np.testing.assert_allclose(np.asarray(params[name]), sigma0 / math.sqrt(fan_in), rtol=1e-6)


def test_noisy_dense_without_noise_uses_the_means():
    layer, variables = noisy_layer()
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
    mu_w, mu_b = variables["params"]["mu_kernel"], variables["params"]["mu_bias"]
    out = layer.apply(variables, x, noise=False)  # no 'noise' RNG needed
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x @ mu_w + mu_b))
    np.testing.assert_allclose(np.asarray(out), np.asarray(x) @ np.asarray(mu_w) + np.asarray(mu_b),
                               rtol=1e-6, atol=1e-6)


def test_noisy_dense_noise_depends_only_on_the_key():
    layer, variables = noisy_layer()
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
    apply = lambda k: np.asarray(layer.apply(variables, x, rngs={"noise": jax.random.PRNGKey(k)}))
    np.testing.assert_array_equal(apply(5), apply(5))
    assert not np.allclose(apply(5), apply(6))
    assert not np.allclose(apply(5), np.asarray(layer.apply(variables, x, noise=False)))


def test_noisy_dense_one_noise_draw_per_forward_pass():
    layer, variables = noisy_layer()
    row = jax.random.normal(jax.random.PRNGKey(1), (6,))
    x = jnp.broadcast_to(row, (2, 3, 6))  # identical rows, extra leading batch axes
    out = np.asarray(layer.apply(variables, x, rngs={"noise": jax.random.PRNGKey(3)}))
    assert out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, np.broadcast_to(out[0, 0], out.shape))


def test_noisy_dense_noise_is_rank_one_factorised():
    fan_in, features = 7, 5
    layer, variables = noisy_layer(fan_in, features, sigma0=0.5, seed=2)
    p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
    # rows 0..fan_in-1: basis vectors (row i of W_noisy plus b_noisy); last row: zeros (b_noisy)
    x = jnp.concatenate([jnp.eye(fan_in), jnp.zeros((1, fan_in))])
    out = np.asarray(layer.apply(variables, x, rngs={"noise": jax.random.PRNGKey(11)}), np.float64)
    b_noisy = out[-1]
    w_noisy = out[:-1] - b_noisy
    eps_w = (w_noisy - p["mu_kernel"]) / p["sigma_kernel"]  # should be outer(f(eps_in), f(eps_out))
    eps_out = (b_noisy - p["mu_bias"]) / p["sigma_bias"]  # should be f(eps_out)
    singular = np.linalg.svd(eps_w, compute_uv=False)
    assert singular[0] > 0.1 and (singular[1:] < 1e-4 * singular[0]).all()
    # the bias noise is the same output factor: every row of eps_w is a multiple of eps_out
    j = int(np.argmax(np.abs(eps_out)))
    eps_in = eps_w[:, j] / eps_out[j]
    np.testing.assert_allclose(eps_w, np.outer(eps_in, eps_out), atol=1e-4)


def test_noisy_dense_noise_factors_follow_signed_sqrt_distribution():
    """f(x) = sign(x) sqrt|x| of normals: E f^2 = E|x| = sqrt(2/pi) (0.80, not 1)."""
    fan_in, features = 4, 4096
    layer, variables = noisy_layer(fan_in, features, seed=3)
    p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
    out = np.asarray(layer.apply(variables, jnp.zeros((1, fan_in)),
                                 rngs={"noise": jax.random.PRNGKey(0)}), np.float64)[0]
    eps_out = (out - p["mu_bias"]) / p["sigma_bias"]
    assert abs(np.mean(eps_out**2) - math.sqrt(2 / math.pi)) < 0.05
    assert abs(np.mean(eps_out)) < 0.05


# --------------------------------------------------------------------------- QNetwork


@pytest.mark.parametrize("atoms", [1, 51])
@pytest.mark.parametrize("noisy", [False, True])
@pytest.mark.parametrize("dueling", [False, True])
def test_q_network_heads(dueling, noisy, atoms):
    num_actions, v_min, v_max = 3, -5.0, 7.0
    net = QNetwork(NetworkConfig(hidden_sizes=(8,), activation="relu"), num_actions,
                   dueling=dueling, noisy=noisy, num_atoms=atoms, v_min=v_min, v_max=v_max)
    obs = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4))  # [batch, envs, obs]
    rngs = {"params": jax.random.PRNGKey(1), "noise": jax.random.PRNGKey(2)}
    variables = net.init(rngs, obs)
    out, state = net.apply(variables, obs, rngs={"noise": jax.random.PRNGKey(3)},
                           capture_intermediates=True)
    assert out.q_values.shape == (2, 3, num_actions)
    assert out.logits.shape == (2, 3, num_actions, atoms)
    logits = np.asarray(out.logits, np.float64)
    if atoms == 1:
        np.testing.assert_array_equal(np.asarray(out.q_values), np.asarray(out.logits[..., 0]))
    else:
        support = np.linspace(v_min, v_max, atoms)
        expected = np.zeros(logits.shape[:-1])
        for index in np.ndindex(*logits.shape[:-1]):
            z = np.exp(logits[index] - logits[index].max())
            expected[index] = float(np.dot(z / z.sum(), support))
        np.testing.assert_allclose(np.asarray(out.q_values), expected, rtol=1e-5, atol=1e-5)
    # the head streams: logits are the advantage layer's output, plus V - mean A if dueling
    inter = state["intermediates"]
    adv = np.asarray(inter["advantage"]["__call__"][0], np.float64).reshape(logits.shape)
    if dueling:
        value = np.asarray(inter["value"]["__call__"][0], np.float64)[..., None, :]
        expected = value + adv - adv.mean(axis=-2, keepdims=True)
    else:
        assert "value" not in variables["params"]
        expected = adv
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    layer_params = variables["params"]["advantage"]
    assert ("mu_kernel" in layer_params) == noisy
    if noisy:
        greedy = net.apply(variables, obs, noise=False)
        np.testing.assert_array_equal(np.asarray(greedy.q_values),
                                      np.asarray(net.apply(variables, obs, noise=False).q_values))
        assert not np.allclose(np.asarray(greedy.logits), logits)


# --------------------------------------------------------------------------- masked replay add


class RingModel:
    """A python-list ring buffer with per-slot priorities."""

    def __init__(self, capacity):
        self.items = [0] * capacity
        self.priorities = [0.0] * capacity
        self.position = 0
        self.size = 0
        self.capacity = capacity

    def add(self, items, valid, priority):
        for item, keep in zip(items, valid):
            if not keep:
                continue
            self.items[self.position] = item
            self.priorities[self.position] = priority
            self.position = (self.position + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)


def items_batch(values):
    values = np.asarray(values)
    return {"obs": jnp.asarray(np.stack([np.full(2, v) for v in values]), jnp.float32),
            "action": jnp.asarray(values, jnp.int32)}


def check_against_model(state, model):
    np.testing.assert_array_equal(np.asarray(state.data["action"]), model.items)
    np.testing.assert_array_equal(np.asarray(state.data["obs"])[:, 0], model.items)
    assert int(state.position) == model.position and int(state.size) == model.size
    leaves = np.asarray(sum_tree.leaf_values(state.priorities, jnp.arange(model.capacity)))
    np.testing.assert_allclose(leaves, model.priorities, rtol=1e-6)
    padded = np.asarray(state.priorities)[sum_tree.leaves_of(state.priorities) + model.capacity:]
    np.testing.assert_array_equal(padded, 0.0)  # padding leaves (and dropped items) stay empty
    np.testing.assert_allclose(float(sum_tree.total(state.priorities)), sum(model.priorities),
                               rtol=1e-6)
    # every internal node is the sum of its children
    tree = np.asarray(state.priorities, np.float64)
    for node in range(1, sum_tree.leaves_of(state.priorities)):
        assert abs(tree[node] - tree[2 * node] - tree[2 * node + 1]) < 1e-5


def test_masked_add_skips_dropped_items():
    capacity = 4
    state = replay.init({"obs": jnp.zeros(2), "action": jnp.int32(0)}, capacity, prioritized=True)
    model = RingModel(capacity)
    add = jax.jit(replay.add)

    valid = [False, True, False, True, True]
    state = add(state, items_batch([1, 2, 3, 4, 5]), jnp.asarray(valid))
    model.add([1, 2, 3, 4, 5], valid, 1.0)
    check_against_model(state, model)
    assert model.items == [2, 4, 5, 0] and model.position == 3 and model.size == 3

    # raise the max priority so the second batch's priorities differ from the first's
    state = replay.update_priorities(state, jnp.array([0]), jnp.array([3.0]), alpha=1.0)
    model.priorities[0] = 3.0 + 1e-6
    new_priority = float(state.max_priority)

    valid = [True, False, True, True, False]
    state = add(state, items_batch([10, 11, 12, 13, 14]), jnp.asarray(valid))
    model.add([10, 11, 12, 13, 14], valid, new_priority)
    check_against_model(state, model)
    assert model.items == [12, 13, 5, 10] and model.position == 2 and model.size == 4


def test_masked_add_all_dropped_leaves_state_unchanged():
    state = replay.init({"obs": jnp.zeros(2), "action": jnp.int32(0)}, 3, prioritized=True)
    state = replay.add(state, items_batch([1, 2]))
    after = replay.add(state, items_batch([7, 8, 9]), jnp.zeros(3, bool))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_masked_add_all_valid_equals_unmasked():
    state = replay.init({"obs": jnp.zeros(2), "action": jnp.int32(0)}, 5, prioritized=True)
    state = replay.add(state, items_batch([1, 2, 3]))
    masked = replay.add(state, items_batch([4, 5, 6]), jnp.ones(3, bool))
    plain = replay.add(state, items_batch([4, 5, 6]))
    for a, b in zip(jax.tree.leaves(masked), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("capacity", [5, 8])
def test_masked_add_random_sequence_matches_ring_model(capacity):
    """Non-power-of-two capacity (padding leaves) and power-of-two capacity, many wraps."""
    rng = np.random.default_rng(capacity)
    state = replay.init({"obs": jnp.zeros(2), "action": jnp.int32(0)}, capacity, prioritized=True)
    model = RingModel(capacity)
    add = jax.jit(replay.add)
    batch = min(capacity, 4)  # at most `capacity` kept per add, so no slot is written twice
    for step in range(12):
        values = list(range(100 * step + 1, 100 * step + 1 + batch))
        valid = list(rng.random(batch) < 0.6)
        state = add(state, items_batch(values), jnp.asarray(valid))
        model.add(values, valid, float(state.max_priority))
        check_against_model(state, model)


def test_masked_add_under_vmap_over_a_population():
    capacity = 4
    one = replay.init({"obs": jnp.zeros(2), "action": jnp.int32(0)}, capacity, prioritized=True)
    states = jax.tree.map(lambda x: jnp.stack([x, x]), one)
    batch = jax.tree.map(lambda x: jnp.stack([x, x + 10]), items_batch([1, 2, 3]))
    masks = [[True, False, True], [False, False, True]]
    states = jax.jit(jax.vmap(replay.add))(states, batch, jnp.asarray(masks))
    for member, offset in ((0, 0), (1, 10)):
        model = RingModel(capacity)
        model.add([1 + offset, 2 + offset, 3 + offset], masks[member], 1.0)
        check_against_model(jax.tree.map(lambda x: x[member], states), model)


@pytest.mark.parametrize("double", [False, True])
def test_td_target_matches_numpy(double):
    """dqn.td_target against the textbook target: r + discount x Q_target(s', a*), a* the
    argmax of Q_target (DQN) or of the online Q (double DQN), from the networks' own outputs."""
    from jaxrl.algos import dqn

    config = dqn.Config(double=double, network=NetworkConfig(hidden_sizes=(8,)))
    network = QNetwork(config.network, 3)
    online = network.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    target = network.init(jax.random.PRNGKey(1), jnp.zeros((1, 4)))
    rng = np.random.default_rng(0)
    next_obs = rng.normal(size=(5, 4)).astype(np.float32)
    reward = rng.normal(size=5).astype(np.float32)
    discount = np.array([0.99, 0.0, 0.98, 0.99, 0.5], np.float32)
    batch = dqn.Transition(next_obs, np.zeros(5, np.int32), reward, discount, next_obs)
    got = dqn.td_target(network, config, online, target, batch, jax.random.PRNGKey(2), jax.random.PRNGKey(3))
    q_target = np.asarray(network.apply(target, next_obs).q_values)
    chooser = np.asarray(network.apply(online, next_obs).q_values) if double else q_target
    expected = reward + discount * q_target[np.arange(5), chooser.argmax(axis=1)]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
