"""One stable-baselines3 or sbx training run in a fresh process: `python sb3_worker.py '<json spec>'`.

The spec names the library (`sb3`: PyTorch on CPU, `sbx`: the same API on JAX), the algorithm
(`ppo` | `dqn`), the algorithm's keyword arguments in the library's own names, the policy's
layers and activation, the learning-rate schedule, one seed and the env steps. The worker
times `learn()` on a fresh model, evaluates it greedily with `evaluate_policy(deterministic=True)`
and prints one line: the result prefix from the spec followed by the result as JSON.
For sbx, the seconds JAX reports spending on tracing, lowering and compiling during `learn()`
are counted as compile seconds and left out of the steady SPS, as for the JAX systems.
Standalone: it never imports jaxrl.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any, Callable

from worker_protocol import serve, version  # a sibling file: the workers run by path

LIBRARIES = {"sb3": "stable_baselines3", "sbx": "sbx"}
DISTRIBUTIONS = {"sb3": "stable-baselines3", "sbx": "sbx-rl"}


def limit_threads(threads: int) -> None:
    """`threads` torch threads in this process (XLA's come from the environment the suite sets),
    so concurrent one-seed processes share the cores the way their users run them."""
    import torch

    torch.set_num_threads(threads)


def algorithm_class(library: str, algo: str) -> type:
    """`PPO` or `DQN` from stable_baselines3 or sbx."""
    module = __import__(LIBRARIES[library], fromlist=["PPO", "DQN"])
    return getattr(module, algo.upper())


def activation(library: str, name: str) -> Any:
    """The library's activation for `tanh`/`relu`: a torch module class (SB3) or a flax function (sbx)."""
    if library == "sb3":
        import torch

        return {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[name]
    import flax.linen as nn

    return {"tanh": nn.tanh, "relu": nn.relu}[name]


def learning_rate(initial: float, anneal: bool) -> float | Callable[[float], float]:
    """A constant rate, or SB3's schedule form (a function of the remaining progress 1 -> 0)
    for linear annealing to zero."""
    return (lambda remaining: initial * remaining) if anneal else initial


def model_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """The algorithm's constructor arguments from the spec, with callables where SB3 wants them."""
    kwargs = dict(spec["kwargs"])
    if "max_grad_norm" in kwargs and kwargs["max_grad_norm"] is None:
        kwargs["max_grad_norm"] = float("inf")  # SB3's way of saying "no clipping"
    policy = dict(spec["policy"])
    policy["activation_fn"] = activation(spec["library"], policy.pop("activation"))
    kwargs["policy_kwargs"] = policy
    kwargs["learning_rate"] = learning_rate(spec["lr"], spec["anneal_lr"])
    return kwargs


def make_model(spec: dict[str, Any], seed: int) -> Any:
    """A fresh model on `num_envs` copies of the env (SB3's default DummyVecEnv), on the CPU."""
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(spec["env"], n_envs=spec["num_envs"], seed=seed)
    return algorithm_class(spec["library"], spec["algo"])(
        "MlpPolicy", env, seed=seed, device="cpu", verbose=0, **model_kwargs(spec))


def timed_learn(model: Any, steps: int) -> float:
    """Seconds of wall time that `model.learn(steps)` takes."""
    start = time.perf_counter()
    model.learn(total_timesteps=steps, progress_bar=False)
    return time.perf_counter() - start


class CompileClock:
    """Sums the seconds JAX reports for tracing, lowering and compiling while it is open
    (sbx compiles its jitted functions lazily, inside `learn()`)."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self) -> None:
        import jax

        self.seconds = 0.0
        self._monitoring = jax.monitoring
        self._monitoring.register_event_duration_secs_listener(self._duration)

    def _duration(self, event: str, seconds: float, **_: Any) -> None:
        if event in self.EVENTS:
            self.seconds += seconds

    def close(self) -> float:
        """Stops listening; returns the seconds counted."""
        self._monitoring.unregister_event_duration_listener(self._duration)
        return self.seconds


def greedy_returns(model: Any, spec: dict[str, Any]) -> list[float]:
    """Undiscounted returns of `eval_episodes` greedy episodes on a separately seeded env."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    env = make_vec_env(spec["env"], n_envs=1, seed=spec["seed"] + 20_000)
    returns, _ = evaluate_policy(model, env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                                 return_episode_rewards=True)
    return [float(r) for r in returns]


def wait_for_peers(barrier: dict[str, Any] | None, seed: int) -> None:
    """Blocks until every concurrent process of the population row is ready to learn (each
    leaves a file in the barrier folder), so their `learn()` windows overlap."""
    if not barrier:
        return
    folder = Path(barrier["dir"])
    (folder / f"{seed}.ready").touch()
    deadline = time.monotonic() + barrier.get("timeout", 120.0)
    while len(list(folder.glob("*.ready"))) < barrier["parties"] and time.monotonic() < deadline:
        time.sleep(0.01)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Warm-up, one timed training run and its greedy evaluation; returns what was measured."""
    limit_threads(spec.get("threads", 1))
    model = make_model(spec, seed=spec["seed"])
    wait_for_peers(spec.get("barrier"), spec["seed"])
    clock = CompileClock() if spec["library"] == "sbx" else None
    started = time.time()
    seconds = timed_learn(model, spec["steps"])
    compile_seconds = clock.close() if clock else None
    steps = int(model.num_timesteps)
    returns = greedy_returns(model, spec)
    return {
        "library": spec["library"], "algo": spec["algo"], "seed": spec["seed"],
        "env_steps_per_seed": steps, "learn_seconds": round(seconds, 3), "learn_window": [started, started + seconds],
        "steady_sps": steps / (seconds - (compile_seconds or 0.0)), "sps_with_compile": steps / seconds,
        "compile_seconds": None if compile_seconds is None else round(compile_seconds, 3),
        "final_eval": {"per_seed": [sum(returns) / len(returns)], "episodes": returns},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {name: version(name) for name in (DISTRIBUTIONS[spec["library"]], "torch", "jax")},
        "threads": {"torch": spec.get("threads", 1), "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")},
    }



if __name__ == "__main__":
    serve(measure)
