"""One rejax measurement in a fresh process: `python rejax_worker.py '<json spec>'`.

Runs inside the rejax virtual environment that `jaxrl bench peers` creates (rejax 0.1.3 needs
gymnax's pre-1.0 API), so it never imports jaxrl. The spec names the algorithm (`ppo` | `dqn`),
rejax's own config (`settings`, passed to `PPO.create` / `DQN.create`), the population size,
the learning-rate schedule and, for DQN, the Q-network's layers. A population is trained the
way rejax users do it, `jax.jit(jax.vmap(algo.train))(keys)` on one device: compile timed
apart by `lower().compile()`, steady SPS = seeds x env steps / seconds of the compiled call.
rejax's in-training evaluation is switched off (a no-op callback, one call at the end);
afterwards every seed is evaluated greedily for `eval_episodes` episodes, outside the timing.
It prints one line: the spec's result prefix followed by the result as JSON.
"""

from __future__ import annotations

import resource
import time
from typing import Any, Callable

from worker_protocol import serve, version  # a sibling file: the workers run by path

VERSIONED = ("rejax", "gymnax", "distrax", "jax", "jaxlib", "flax", "optax")


def ppo_learning_rate(initial: float, anneal: bool, minibatch_steps_per_update: int,
                      num_updates: int) -> float | Callable[[Any], Any]:
    """A constant rate, or linear annealing to zero by update (held over an update's minibatch
    steps, as jaxrl's `anneal_lr` does); rejax hands `learning_rate` to optax.adam unchanged."""
    if not anneal:
        return initial
    import jax.numpy as jnp

    def schedule(count: Any) -> Any:
        update = count // minibatch_steps_per_update
        return initial * (1.0 - jnp.minimum(update / num_updates, 1.0))

    return schedule


def make_algorithm(spec: dict[str, Any]) -> Any:
    """The rejax algorithm object for the spec, with in-training evaluation switched off."""
    import jax.numpy as jnp
    from flax import linen as nn
    from rejax import DQN, PPO

    settings = dict(spec["settings"])
    if spec["algo"] == "ppo":
        batch = settings["num_envs"] * settings["num_steps"]
        settings["learning_rate"] = ppo_learning_rate(
            spec["lr"], spec["anneal_lr"], settings["num_epochs"] * settings["num_minibatches"],
            max(1, settings["total_timesteps"] // batch))
        algo = PPO.create(**settings)
    else:
        settings["learning_rate"] = spec["lr"]
        algo = DQN.create(**settings)
        # rejax 0.1.3's DQN.create always passes hidden_layer_sizes=(64, 64) itself, so
        # agent_kwargs cannot set the layers: build the same agent class with the asked ones.
        from rejax.networks import DiscreteQNetwork, EpsilonGreedyPolicy

        agent = EpsilonGreedyPolicy(DiscreteQNetwork)(
            hidden_layer_sizes=tuple(spec["hidden_layer_sizes"]), action_dim=algo.action_space.n,
            activation=getattr(nn, spec["activation"]))
        algo = algo.replace(agent=agent)
    return algo.replace(eval_callback=lambda algo, ts, rng: jnp.zeros(()))


def greedy_action(algo: Any, algo_name: str, ts: Any) -> Callable[[Any, Any], Any]:
    """`act(obs, rng)` taking the most likely action (PPO) or the largest Q-value (DQN)."""
    import jax.numpy as jnp

    def act(obs: Any, rng: Any) -> Any:
        if algo_name == "ppo":
            logits = algo.actor.apply(ts.actor_ts.params, obs[None],
                                      method=lambda module, x: module._action_dist(x).logits)
        else:
            logits = algo.agent.apply(ts.q_ts.params, obs[None])
        return jnp.argmax(logits, axis=-1)[0]

    return act


def greedy_returns(algo: Any, algo_name: str, states: Any, keys: Any, episodes: int) -> Any:
    """Mean return of `episodes` greedy episodes per seed (rejax's own evaluator, vmapped)."""
    import jax
    from rejax.evaluate import evaluate

    def one_seed(ts: Any, key: Any) -> Any:
        _, returns = evaluate(greedy_action(algo, algo_name, ts), key, algo.env, algo.env_params,
                              episodes, algo.env_params.max_steps_in_episode)
        return returns

    return jax.jit(jax.vmap(one_seed))(states, keys)



def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Compiles, trains and evaluates one population; returns what was measured."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_compilation_cache", False)
    algo = make_algorithm(spec)
    keys = jax.random.split(jax.random.PRNGKey(spec.get("seed", 0)), spec["seeds"])
    start = time.perf_counter()
    train = jax.jit(jax.vmap(algo.train)).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    states, _ = jax.block_until_ready(train(keys))
    run_seconds = time.perf_counter() - start
    steps = int(np.asarray(states.global_step).reshape(-1)[0])
    eval_keys = jax.random.split(jax.random.PRNGKey(spec.get("seed", 0) + 1), spec["seeds"])
    returns = np.asarray(greedy_returns(algo, spec["algo"], states, eval_keys, spec["eval_episodes"]))
    device = jax.devices()[0]
    return {
        "steady_sps": spec["seeds"] * steps / run_seconds, "compile_seconds": compile_seconds,
        "run_seconds": run_seconds, "env_steps_per_seed": steps, "devices_used": jax.device_count(),
        "platform": device.platform, "device_kind": device.device_kind,
        "final_eval": {"per_seed": returns.mean(axis=1).tolist(), "episodes_per_seed": int(returns.shape[1])},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {name: version(name) for name in VERSIONED},
    }


if __name__ == "__main__":
    serve(measure)
