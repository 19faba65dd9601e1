"""Replay buffers and the sum-tree against plain numpy references, alone and under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.buffers import replay, sum_tree

pytestmark = pytest.mark.timeout(300)


def numpy_tree(leaves: np.ndarray) -> np.ndarray:
    """Reference: node i = sum of its children, built bottom-up from padded leaves."""
    size = sum_tree.leaves_for(len(leaves))
    tree = np.zeros(2 * size)
    tree[size:size + len(leaves)] = leaves
    for node in range(size - 1, 0, -1):
        tree[node] = tree[2 * node] + tree[2 * node + 1]
    return tree


def test_sum_tree_updates_match_numpy_with_repeated_indices():
    rng = np.random.default_rng(0)
    capacity, leaves = 13, np.zeros(13)
    tree = sum_tree.init(capacity)
    update = jax.jit(sum_tree.update)
    for _ in range(20):
        indices = rng.integers(0, capacity, size=6)  # repeats and siblings included
        values = rng.uniform(0, 5, size=6)
        tree = update(tree, jnp.asarray(indices), jnp.asarray(values, jnp.float32))
        for i, v in zip(indices, values):  # last write wins, as documented
            leaves[i] = v
        np.testing.assert_allclose(np.asarray(tree), numpy_tree(leaves), rtol=1e-5, atol=1e-5)


def test_sum_tree_find_matches_cumulative_search():
    values = np.array([0.5, 0.0, 2.0, 1.0, 0.0, 3.5, 1.0])
    tree = sum_tree.update(sum_tree.init(len(values)), jnp.arange(len(values)), jnp.asarray(values))
    masses = np.linspace(0, values.sum(), 200, endpoint=False)
    expected = np.searchsorted(np.cumsum(values), masses, side="right")
    np.testing.assert_array_equal(np.asarray(sum_tree.find(tree, jnp.asarray(masses))), expected)
    # leaves with zero value are never found
    assert not np.isin(np.asarray(sum_tree.find(tree, jnp.asarray(masses))), [1, 4]).any()


def test_sum_tree_samples_in_proportion():
    values = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    tree = sum_tree.update(sum_tree.init(5), jnp.arange(5), jnp.asarray(values))
    draws = jax.jit(jax.vmap(lambda k: sum_tree.sample(tree, k, 64)))(
        jax.random.split(jax.random.PRNGKey(0), 2000))
    freq = np.bincount(np.asarray(draws).ravel(), minlength=5) / draws.size
    np.testing.assert_allclose(freq, values / values.sum(), atol=0.01)


def transition(i):
    return {"obs": jnp.full((3,), i, jnp.float32), "action": jnp.int32(i)}


@pytest.mark.parametrize("prioritized", [True, False])
def test_add_wraps_around_like_a_ring(prioritized):
    state = replay.init(transition(0), capacity=5, prioritized=prioritized)
    assert replay.is_prioritized(state) == prioritized  # a uniform buffer keeps no sum-tree
    ring, position = np.zeros(5), 0
    for start in (0, 3, 6):
        batch = jax.tree.map(lambda *x: jnp.stack(x), *[transition(start + j + 1) for j in range(3)])
        state = replay.add(state, batch)
        for j in range(3):
            ring[(position + j) % 5] = start + j + 1
        position = (position + 3) % 5
    np.testing.assert_array_equal(np.asarray(state.data["action"]), ring)
    np.testing.assert_array_equal(np.asarray(state.data["obs"])[:, 0], ring)
    assert int(state.position) == position and int(state.size) == 5


def test_uniform_sampling_only_reads_filled_slots():
    state = replay.add(replay.init(transition(0), 100),
                       jax.tree.map(lambda *x: jnp.stack(x), *[transition(i + 1) for i in range(7)]))
    sample = replay.sample_uniform(state, jax.random.PRNGKey(1), 4000)
    assert isinstance(sample, replay.Sample)
    data, indices, weights = sample
    assert set(np.unique(np.asarray(indices))) == set(range(7))
    np.testing.assert_array_equal(np.asarray(data["action"]), np.asarray(indices) + 1)
    assert weights.dtype == jnp.float32 and weights.shape == (4000,)
    np.testing.assert_array_equal(np.asarray(weights), 1.0)
    # the draw is jax.random.randint over the filled slots: a key gives the same batch as ever
    np.testing.assert_array_equal(np.asarray(indices),
                                  np.asarray(jax.random.randint(jax.random.PRNGKey(1), (4000,), 0, 7)))


def test_buffers_are_uniform_unless_asked_and_refuse_priority_calls():
    batch = jax.tree.map(lambda *x: jnp.stack(x), *[transition(i + 1) for i in range(3)])
    uniform = replay.add(replay.init(transition(0), 8), batch)
    assert not replay.is_prioritized(uniform)
    key = jax.random.PRNGKey(0)
    for call in (lambda s: replay.sample_prioritized(s, key, 4, 0.4),
                 lambda s: replay.update_priorities(s, jnp.arange(2), jnp.ones(2), 0.6)):
        for wrap in (lambda f: f, jax.jit, jax.vmap):  # known from shapes, so also when tracing
            state = jax.tree.map(lambda x: jnp.stack([x, x]), uniform) if wrap is jax.vmap else uniform
            with pytest.raises(ValueError, match=r"buffers\.init\(\.\.\., prioritized=True\)"):
                wrap(call)(state)
    with pytest.raises(TypeError):
        replay.init(transition(0), 8, True)  # prioritized is keyword-only
    prioritized = replay.init(transition(0), 8, prioritized=True)
    assert replay.is_prioritized(prioritized)
    assert isinstance(replay.sample_prioritized(prioritized, key, 4, 0.4), replay.Sample)


def test_prioritized_probabilities_weights_and_updates_match_the_formulas():
    alpha, beta, eps = 0.6, 0.4, 1e-6
    state = replay.init(transition(0), 8, prioritized=True)
    state = replay.add(state, jax.tree.map(lambda *x: jnp.stack(x), *[transition(i) for i in range(6)]))
    # new transitions enter at the max priority (1.0 initially): all equally likely
    np.testing.assert_allclose(np.asarray(sum_tree.leaf_values(state.priorities, jnp.arange(6))), 1.0)
    td = np.array([0.5, -2.0, 0.0, 1.0, 3.0, -0.1])
    state = replay.update_priorities(state, jnp.arange(6), jnp.asarray(td), alpha, eps)
    p = (np.abs(td) + eps) ** alpha
    np.testing.assert_allclose(np.asarray(sum_tree.leaf_values(state.priorities, jnp.arange(6))), p, rtol=1e-5)
    assert float(state.max_priority) == pytest.approx(max(1.0, p.max()), rel=1e-6)
    batch = replay.sample_prioritized(state, jax.random.PRNGKey(3), 32, beta)
    idx = np.asarray(batch.indices)
    # the draw is the sum-tree's, so a key gives the same batch as ever
    np.testing.assert_array_equal(idx, np.minimum(np.asarray(
        sum_tree.sample(state.priorities, jax.random.PRNGKey(3), 32)), 5))
    probs = p[idx] / p.sum()
    weights = (6 * probs) ** (-beta)
    np.testing.assert_allclose(np.asarray(batch.weights), weights / weights.max(), rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(batch.data["action"]), idx)
    # frequencies follow P(i) = p_i / sum p
    many = jax.jit(jax.vmap(lambda k: replay.sample_prioritized(state, k, 32, beta).indices))(
        jax.random.split(jax.random.PRNGKey(4), 1000))
    freq = np.bincount(np.asarray(many).ravel(), minlength=6) / many.size
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.01)
    # a new transition takes the highest priority seen so far
    state = replay.add(state, jax.tree.map(lambda x: x[None], transition(9)))
    assert float(sum_tree.leaf_values(state.priorities, jnp.array([6]))[0]) == pytest.approx(
        float(state.max_priority))


def test_buffers_vmap_over_a_population():
    members = 3
    states = jax.vmap(lambda _: replay.init(transition(0), 16, prioritized=True))(jnp.arange(members))
    batches = jax.vmap(lambda m: jax.tree.map(lambda *x: jnp.stack(x),
                                              *[transition(0) for _ in range(4)]))(jnp.arange(members))
    batches = jax.tree.map(lambda x: x + jnp.arange(members).reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype),
                           batches)
    states = jax.jit(jax.vmap(replay.add))(states, batches)
    td = jnp.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    states = jax.jit(jax.vmap(lambda s, t: replay.update_priorities(s, jnp.arange(4), t, 1.0)))(states, td)
    sample = jax.jit(jax.vmap(lambda s, k: replay.sample_prioritized(s, k, 8, 1.0)))(
        states, jax.random.split(jax.random.PRNGKey(0), members))
    for member in range(members):
        # member m's mass sits almost entirely on slot m, and it reads only its own data
        assert np.mean(np.asarray(sample.indices[member]) == member) > 0.99
        np.testing.assert_array_equal(np.asarray(sample.data["action"][member]), member)
