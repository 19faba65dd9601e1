"""One measurement of the in-repo single-file references: `python reference_worker.py '<json spec>'`.

The spec names the algorithm (`ppo` | `dqn`: `reference_ppo.py` or `reference_dqn.py`, sibling
files written from scratch in PureJaxRL's style), the reference's own config keys (`config`,
e.g. `LR`, `NUM_ENVS`, `TOTAL_TIMESTEPS`), the population size and the greedy episodes per
seed. A population is trained the way PureJaxRL users do it, `jax.jit(jax.vmap(make_train(config)))(keys)`
on one device: compile timed apart by `lower().compile()`, steady SPS = seeds x env steps /
seconds of the compiled call. Afterwards every seed plays greedy episodes, outside the timing.
Standalone: it never imports jaxrl, and the references never import each other's algorithm.
"""

from __future__ import annotations

import resource
from typing import Any

from worker_protocol import serve, version  # sibling files: the workers run by path

VERSIONED = ("jax", "jaxlib", "flax", "optax", "gymnax")


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Compiles, trains and evaluates one population; returns what was measured."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_compilation_cache", False)
    import reference_dqn
    import reference_ppo

    module = {"ppo": reference_ppo, "dqn": reference_dqn}[spec["algo"]]
    config, seeds, seed = spec["config"], spec["seeds"], spec.get("seed", 0)
    out, compile_seconds, run_seconds = reference_ppo.timed_run(module.make_train, config, seeds, seed)
    steps = module.env_steps_per_seed(config)
    evaluate = jax.jit(jax.vmap(module.make_greedy_eval(config, spec["eval_episodes"])))
    returns = np.asarray(evaluate(module.trained_params(out), jax.random.split(jax.random.PRNGKey(seed + 1), seeds)))
    device = jax.devices()[0]
    return {
        "steady_sps": seeds * steps / run_seconds, "compile_seconds": compile_seconds,
        "run_seconds": run_seconds, "env_steps_per_seed": steps, "devices_used": 1,
        "platform": device.platform, "device_kind": device.device_kind,
        "final_eval": {"per_seed": returns.mean(axis=1).tolist(), "episodes_per_seed": int(returns.shape[1])},
        "training_return": {"per_seed": module.final_returns(out).tolist()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {name: version(name) for name in VERSIONED},
    }


if __name__ == "__main__":
    serve(measure)
