"""Custom combiners named by import path in the tests (`combine.strategy: "custom_combiners:<name>"`;
the tests folder is on `sys.path`)."""

import jax
import numpy as np

CALLS: list[dict] = []  # what `first_member_networks` saw, call by call (the tests read it)


def first_member_networks(state, stats):
    """Every member takes member 0's params; records what it was given."""
    CALLS.append({"stats": stats, "leaf_types": {type(x) for x in jax.tree.leaves(state)},
                  "params": jax.tree.map(np.asarray, state.params)})
    params = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x)[:1], x.shape).copy(), state.params)
    return state._replace(params=params)


def drops_a_member(state, stats):
    """A broken combiner: returns one member fewer."""
    return jax.tree.map(lambda x: x[1:], state)


not_a_function = 3
