"""Continuous policy distributions against scipy: log-probs, entropies, sampling, bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from scipy import integrate, stats

from jaxrl.networks import Beta, Categorical, Gaussian, PolicyConfigError, TanhGaussian, policy_spec

pytestmark = pytest.mark.timeout(120)
RTOL = dict(rtol=1e-4, atol=1e-4)
RNG = np.random.default_rng(7)
MEAN = RNG.normal(size=(5, 3)).astype(np.float32)
LOG_STD = RNG.uniform(-1.5, 0.7, size=(5, 3)).astype(np.float32)
LOW = np.array([-2.0, 0.0, -1.0], np.float32)
HIGH = np.array([2.0, 3.0, 1.0], np.float32)


def test_gaussian_log_prob_entropy_mode_and_clipping():
    dist = Gaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD), jnp.asarray(LOW), jnp.asarray(HIGH))
    raw = RNG.normal(size=(5, 3)).astype(np.float32) * 3
    ref = stats.norm(MEAN.astype(np.float64), np.exp(LOG_STD.astype(np.float64)))
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(raw)), ref.logpdf(raw).sum(-1), **RTOL)
    np.testing.assert_allclose(dist.entropy(), ref.entropy().sum(-1), **RTOL)
    np.testing.assert_array_equal(dist.mode(), MEAN)
    # The env gets the raw sample clipped into the bounds; the log-prob stays the raw one's.
    np.testing.assert_allclose(dist.to_env(jnp.asarray(raw)), np.clip(raw, LOW, HIGH))


def test_gaussian_samples_have_the_right_moments():
    n = 50_000
    dist = Gaussian(jnp.full((n, 2), 0.5), jnp.full((n, 2), np.log(2.0)), -jnp.inf, jnp.inf)
    x = np.asarray(dist.sample(jax.random.PRNGKey(0)))
    np.testing.assert_allclose(x.mean(0), 0.5, atol=0.04)
    np.testing.assert_allclose(x.std(0), 2.0, atol=0.04)


def squashed_logpdf(a, mean, std, low, high):
    """Density of a = low + (tanh(u) + 1)(high - low)/2, u ~ N(mean, std), by change of variables."""
    y = (a - low) / (high - low) * 2.0 - 1.0  # in (-1, 1)
    u = np.arctanh(y)
    du_da = 1.0 / (1.0 - y**2) * 2.0 / (high - low)
    return stats.norm(mean, std).logpdf(u) + np.log(du_da)


def test_tanh_gaussian_log_prob_matches_the_change_of_variables():
    dist = TanhGaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD), jnp.asarray(LOW), jnp.asarray(HIGH))
    raw = RNG.normal(size=(5, 3)).astype(np.float32)
    action = np.asarray(dist.to_env(jnp.asarray(raw)), np.float64)
    assert np.all(action > LOW) and np.all(action < HIGH)
    expected = squashed_logpdf(action, MEAN.astype(np.float64), np.exp(LOG_STD.astype(np.float64)),
                               LOW.astype(np.float64), HIGH.astype(np.float64)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(raw)), expected, rtol=1e-4, atol=2e-3)
    # Stable far into the tails, where tanh(u) rounds to +-1 in float32.
    far = TanhGaussian(jnp.zeros(1), jnp.zeros(1), -jnp.ones(1), jnp.ones(1))
    assert np.isfinite(float(far.log_prob(jnp.asarray([30.0]))))
    np.testing.assert_allclose(far.log_prob(jnp.asarray([30.0])),
                               stats.norm.logpdf(30.0) - (2 * (np.log(2) - 30.0 - np.log1p(np.exp(-60.0)))),
                               rtol=1e-5)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (1.5, 0.3), (-0.4, 2.5), (3.0, 0.05)])
def test_tanh_gaussian_entropy_against_numerical_integration(mean, std):
    low, high = -2.0, 3.0
    dist = TanhGaussian(jnp.asarray([mean], jnp.float32), jnp.asarray([np.log(std)], jnp.float32),
                        jnp.asarray([low]), jnp.asarray([high]))
    log_cosh = lambda u: np.logaddexp(u, -u) - np.log(2.0)  # 1 - tanh^2 = 1 / cosh^2
    logpdf = lambda u: (stats.norm(mean, std).logpdf(u) + 2 * log_cosh(u)
                        - np.log((high - low) / 2))
    expected, _ = integrate.quad(lambda u: -stats.norm(mean, std).pdf(u) * logpdf(u),
                                 mean - 12 * std, mean + 12 * std, limit=200)
    np.testing.assert_allclose(float(dist.entropy()), expected, rtol=1e-3, atol=1e-3)


def test_beta_log_prob_entropy_mode_with_scaling():
    alpha = RNG.uniform(1.05, 6.0, size=(5, 3)).astype(np.float32)
    beta = RNG.uniform(1.05, 6.0, size=(5, 3)).astype(np.float32)
    dist = Beta(jnp.asarray(alpha), jnp.asarray(beta), jnp.asarray(LOW), jnp.asarray(HIGH))
    x = RNG.uniform(0.01, 0.99, size=(5, 3)).astype(np.float32)
    ref = stats.beta(alpha.astype(np.float64), beta.astype(np.float64), loc=LOW, scale=HIGH - LOW)
    action = np.asarray(dist.to_env(jnp.asarray(x)))
    np.testing.assert_allclose(action, LOW + x * (HIGH - LOW), rtol=1e-6)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(x)), ref.logpdf(action).sum(-1), **RTOL)
    np.testing.assert_allclose(dist.entropy(), ref.entropy().sum(-1), **RTOL)
    np.testing.assert_allclose(dist.to_env(dist.mode()), ref.mean(), rtol=1e-5)


def test_beta_samples_stay_inside_and_match_the_mean():
    n = 40_000
    dist = Beta(jnp.full((n, 1), 2.0), jnp.full((n, 1), 5.0), jnp.asarray([-1.0]), jnp.asarray([1.0]))
    x = np.asarray(dist.sample(jax.random.PRNGKey(1)))
    assert np.all((x > 0) & (x < 1))
    np.testing.assert_allclose(x.mean(), 2.0 / 7.0, atol=0.005)
    assert np.all(np.isfinite(np.asarray(dist.log_prob(jnp.asarray(x)))))


def test_policy_spec_checks_the_action_space():
    box = spaces.Box(-2.0, 2.0, (1,), jnp.float32)
    assert policy_spec(box).kind == "gaussian"  # kind="auto" by default
    assert policy_spec(spaces.Discrete(3)).kind == "categorical"
    spec = policy_spec(box, kind="beta")
    assert (spec.low, spec.high, spec.size) == ((-2.0,), (2.0,), 1)
    spec = policy_spec(box, "tanh_gaussian", log_std="state", init_log_std=-0.5)
    assert (spec.kind, spec.log_std, spec.init_log_std) == ("tanh_gaussian", "state", -0.5)
    for kind in ("gaussian", "tanh_gaussian", "beta"):
        with pytest.raises(PolicyConfigError, match="continuous.*Discrete"):
            policy_spec(spaces.Discrete(2), kind=kind)
    with pytest.raises(PolicyConfigError, match="categorical needs a Discrete"):
        policy_spec(box, kind="categorical")
    with pytest.raises(PolicyConfigError, match="not finite"):
        policy_spec(spaces.Box(-jnp.inf, jnp.inf, (2,), jnp.float32), kind="beta")
    with pytest.raises(TypeError, match="action space first"):
        policy_spec("beta", box)  # the old argument order


# --------------------------------------------------------------------------- distrax-style API

DISTRIBUTIONS = {
    "categorical": lambda: Categorical(jnp.asarray(MEAN)),
    "gaussian": lambda: Gaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD), jnp.asarray(LOW),
                                 jnp.asarray(HIGH)),
    "tanh_gaussian": lambda: TanhGaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD), jnp.asarray(LOW),
                                          jnp.asarray(HIGH)),
    "beta": lambda: Beta(jnp.exp(jnp.asarray(LOG_STD)) + 1.0, jnp.exp(jnp.asarray(MEAN)) + 1.0,
                         jnp.asarray(LOW), jnp.asarray(HIGH)),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_sample_takes_distraxs_seed_keyword_or_a_positional_key(name):
    dist = DISTRIBUTIONS[name]()
    key = jax.random.PRNGKey(4)
    np.testing.assert_array_equal(np.asarray(dist.sample(seed=key)), np.asarray(dist.sample(key)))
    assert float(jnp.max(jnp.abs(dist.kl_divergence(dist)))) < 1e-5  # KL(p || p) = 0
    other = Categorical(jnp.zeros(3)) if name != "categorical" else DISTRIBUTIONS["gaussian"]()
    with pytest.raises(TypeError, match="kl_divergence needs another"):
        dist.kl_divergence(other)


def test_categorical_kl_matches_scipy():
    rng = np.random.default_rng(21)
    p_logits, q_logits = (rng.normal(size=(4, 6)).astype(np.float32) * 2 for _ in range(2))
    got = np.asarray(Categorical(jnp.asarray(p_logits)).kl_divergence(Categorical(jnp.asarray(q_logits))))
    probs = lambda logits: np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = [stats.entropy(p, q) for p, q in zip(probs(p_logits.astype(np.float64)),
                                                   probs(q_logits.astype(np.float64)))]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def kl_by_integration(logpdf_p, logpdf_q, low, high):
    """KL(p || q) = integral of p (log p - log q), by adaptive quadrature over [low, high]."""
    value, _ = integrate.quad(lambda x: np.exp(logpdf_p(x)) * (logpdf_p(x) - logpdf_q(x)), low, high,
                              limit=400, epsabs=1e-10)
    return value


def test_gaussian_kl_matches_numerical_integration():
    mean_q = (MEAN + RNG.normal(size=MEAN.shape)).astype(np.float32)
    log_std_q = (LOG_STD + RNG.uniform(-0.5, 0.5, size=LOG_STD.shape)).astype(np.float32)
    p = Gaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD), jnp.asarray(LOW), jnp.asarray(HIGH))
    q = Gaussian(jnp.asarray(mean_q), jnp.asarray(log_std_q), jnp.asarray(LOW), jnp.asarray(HIGH))
    expected = np.zeros(MEAN.shape[0])
    for i, j in np.ndindex(MEAN.shape):
        np_, nq = (stats.norm(m[i, j], np.exp(ls[i, j])) for m, ls in ((MEAN, LOG_STD), (mean_q, log_std_q)))
        expected[i] += kl_by_integration(np_.logpdf, nq.logpdf, MEAN[i, j] - 15 * np_.std(),
                                         MEAN[i, j] + 15 * np_.std())
    np.testing.assert_allclose(np.asarray(p.kl_divergence(q)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("p_params,q_params", [((0.3, 0.4), (-0.2, 0.8)), ((1.2, 0.25), (0.9, 0.5))])
def test_tanh_gaussian_kl_matches_integration_over_the_actions(p_params, q_params):
    """Integrated in the env's action space with the change-of-variables densities, so the
    invariance of KL under the squash is checked, not assumed."""
    low, high = -2.0, 3.0
    make = lambda m, s: TanhGaussian(jnp.asarray([m], jnp.float32), jnp.asarray([np.log(s)], jnp.float32),
                                     jnp.asarray([low]), jnp.asarray([high]))
    got = float(make(*p_params).kl_divergence(make(*q_params)))
    logpdf = lambda m, s: (lambda a: squashed_logpdf(a, m, s, low, high))
    eps = 1e-9 * (high - low)
    expected = kl_by_integration(logpdf(*p_params), logpdf(*q_params), low + eps, high - eps)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_beta_kl_matches_numerical_integration_with_scaling():
    alpha_p, beta_p, alpha_q, beta_q = (RNG.uniform(1.1, 5.0, size=(2, 3)).astype(np.float32)
                                        for _ in range(4))
    p = Beta(jnp.asarray(alpha_p), jnp.asarray(beta_p), jnp.asarray(LOW), jnp.asarray(HIGH))
    q = Beta(jnp.asarray(alpha_q), jnp.asarray(beta_q), jnp.asarray(LOW), jnp.asarray(HIGH))
    expected = np.zeros(2)
    for i, j in np.ndindex(alpha_p.shape):
        bp, bq = (stats.beta(a[i, j], b[i, j], loc=LOW[j], scale=HIGH[j] - LOW[j])
                  for a, b in ((alpha_p, beta_p), (alpha_q, beta_q)))
        expected[i] += kl_by_integration(bp.logpdf, bq.logpdf, LOW[j], HIGH[j])
    np.testing.assert_allclose(np.asarray(p.kl_divergence(q)), expected, rtol=1e-4, atol=1e-5)
