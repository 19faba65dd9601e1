"""The `peers` suite: the same workloads with the same hyperparameters, side by side in one
session, in jaxrl and in peer libraries — the in-repo single-file reference (PureJaxRL's style),
rejax 0.1.3 (pure JAX), stable-baselines3 (PyTorch) and sbx (the SB3 API on JAX) — with
ours/theirs SPS ratios taken pair by pair within each repeat and summarised by their median.

- JAX systems train a population in one program: jaxrl through `jaxrl.bench.worker` (exactly
  `jaxrl train`); the reference (`peer_workers/reference_ppo.py`, `reference_dqn.py`: written
  from scratch, independent of jaxrl's algorithms on purpose) as PureJaxRL users run it,
  `jax.jit(jax.vmap(make_train(config)))(keys)` on one XLA device in this environment; rejax
  as `jax.jit(jax.vmap(algo.train))(keys)` on one XLA CPU device in a virtual environment of
  its own (rejax 0.1.3 needs gymnax's pre-1.0 API), created on first use under
  `$JAXRL_BENCH_CACHE` (default `~/.cache/jaxrl/bench/`) and reused afterwards. It holds
  rejax, distrax and gymnax 0.0.9 and sees this environment's packages behind them, so all
  three JAX systems run the very same jax/jaxlib/flax/optax install.
- SB3 and sbx train one seed per process, as their users do; an N-seed population is run as
  single-seed processes `os.cpu_count()` at a time, and its SPS is the sum over one such wave.
- Every peer's settings are derived from the jaxrl reference config, so the mapping cannot
  drift from it; what a peer cannot express is listed in `DIFFERENCES` and in the report.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from jaxrl.bench import common
from jaxrl.bench.common import eval_cell, fmt_range, paired_ratios, summary  # noqa: F401  (the suite's helpers)

REJAX_VERSION = "0.1.3"
REJAX_GYMNAX = "0.0.9"  # the last gymnax before 1.0 split `done` into terminated/truncated
PEERS_EXTRA = "not installed: pip install 'jaxrl[peers]'"
SYSTEMS = ("jaxrl", "reference", "rejax", "sb3", "sbx")
LABELS = {"jaxrl": "jaxrl", "reference": "reference (single file)", "rejax": f"rejax {REJAX_VERSION}",
          "sb3": "stable-baselines3", "sbx": "sbx"}
PEER_DISTRIBUTIONS = {"sb3": "stable-baselines3", "sbx": "sbx-rl"}
WORKERS = Path(__file__).resolve().parent / "peer_workers"
INSTALL_TIMEOUT = 1200.0
PEER_MODES = {"same size": "one process per core at once", "one at a time": "one process at a time"}


class Steps(NamedTuple):
    """Env steps per seed of one budget's rows, and overrides that budget applies to every system."""

    single: int  # JAX systems, one seed
    population: int  # JAX systems, the population row
    process: int  # each SB3/sbx single-seed process
    overrides: tuple[str, ...] = ()


class Workload(NamedTuple):
    """One algorithm on one env: a jaxrl reference config, its population size and budgets."""

    name: str
    title: str
    algo: str  # ppo | dqn
    config: str  # in configs/
    population: int  # seeds of the population row (quick and full; tiny uses 2)
    steps: dict[str, Steps]


WORKLOADS = (
    Workload("ppo-cartpole", "PPO CartPole-v1", "ppo", "ppo_cartpole_reference.yaml", 64, {
        # multiples of the 4 x 128 batch, so every system trains whole updates of the same count
        "tiny": Steps(4_096, 4_096, 4_096),
        "quick": Steps(102_400, 25_600, 20_480),
        "full": Steps(499_712, 99_840, 51_200),
    }),
    Workload("dqn-cartpole", "DQN CartPole-v1", "dqn", "dqn_cartpole_reference.yaml", 16, {
        "tiny": Steps(3_000, 3_000, 3_000, ("algo.learning_starts=1000",)),
        "quick": Steps(30_000, 30_000, 30_000),
        "full": Steps(100_000, 100_000, 50_000),
    }),
)

# (system, line) per algorithm: every setting a peer cannot express, or expresses differently.
DIFFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "ppo": (
        ("reference", "gymnax CartPole-v1 with done = terminated or truncated, as PureJaxRL: no bootstrapping at "
                      "the 500-step time limit"),
        ("reference", "its network is fixed (separate 64-64 tanh actor and critic, orthogonal init), the shape of "
                      "this config's; only the hyperparameters are taken from the config"),
        ("reference", "its scan returns only the per-update mean training return, not PureJaxRL's per-step "
                      "`info` arrays (that can only make it faster)"),
        ("rejax", "no learning-rate annealing option; its `learning_rate` goes to `optax.adam` "
                  "unchanged, so the worker passes an optax schedule equal to jaxrl's per-update linear decay"),
        ("rejax", "`max_grad_norm` 0.5 clips each gradient element to ±0.5 (`optax.clip`), not the global norm"),
        ("rejax", "Adam eps 1e-8 (optax's default, not configurable) instead of 1e-5"),
        ("rejax", "Flax's default init (LeCun normal), not configurable, instead of orthogonal "
                  "(√2 hidden, 0.01 policy, 1 value)"),
        ("rejax", "gymnax 0.0.9 CartPole: done = terminated or truncated, so no bootstrapping at the 500-step "
                  "time limit (jaxrl, SB3 and sbx bootstrap from the final observation)"),
        ("rejax", "actor and critic keep separate Adam states and clip separately (the gradients are the "
                  "same: the networks are separate)"),
        ("sb3", "value loss: SB3 takes the squared error of the *clipped* prediction (`clip_range_vf`), not the "
                "max of clipped and unclipped, and has no ½ factor (jaxrl: vf_coef · ½ · max(...))"),
        ("sb3", "the annealed rate is set once per update from the progress after the rollout "
                "(update k uses 1 − (k+1)/K; jaxrl 1 − k/K)"),
        ("sb3", "gymnasium's NumPy CartPole-v1 in a DummyVecEnv (same dynamics, different implementation)"),
        ("sbx", "`clip_range_vf` is accepted but ignored (no value clipping); value loss vf_coef · MSE, no ½ factor"),
        ("sbx", "actor and critic have separate Adam states, each with its own global-norm clip at 0.5"),
        ("sbx", "`ortho_init=True` only makes the actor's output layer orthogonal(0.01); the other layers "
                "use Flax's default init"),
        ("sbx", "learning-rate annealing and env as for SB3"),
    ),
    "dqn": (
        ("reference", "gymnax CartPole-v1 with done = terminated or truncated: no bootstrapping at the time limit"),
        ("reference", "its network is fixed (120-84 ReLU) with Flax's default init (LeCun normal) vs jaxrl's "
                      "orthogonal torso"),
        ("reference", "its gradient step and target copy sit under `lax.cond`, which `vmap` turns into both "
                      "branches every iteration (as in PureJaxRL); a ring buffer of per-env rows sampled with "
                      "replacement replaces flashbax"),
        ("rejax", "loss `optax.l2_loss` = ½ · squared error (jaxrl: squared error; same minimiser, "
                  "gradients halved)"),
        ("rejax", "`DQN.create` always builds a 64-64 network (it passes `hidden_layer_sizes` itself), so the "
                  "worker swaps in rejax's own `EpsilonGreedyPolicy(DiscreteQNetwork)` with 120-84 ReLU"),
        ("rejax", "replay minibatches are drawn without replacement (`jax.random.choice` with p over the whole "
                  "buffer); jaxrl and SB3 draw with replacement"),
        ("rejax", "no bootstrapping at the time limit (gymnax 0.0.9 done = terminated or truncated)"),
        ("rejax", "acts uniformly at random until learning starts (as SB3/sbx do); jaxrl acts ε-greedily from "
                  "the first step (ε ≈ 1 → 0.81 over the 1e4 warm-up steps)"),
        ("rejax", "Flax's default init (LeCun normal) vs jaxrl's orthogonal torso"),
        ("sb3", "Huber (smooth L1) loss, hard-coded; jaxrl uses MSE"),
        ("sb3", "PyTorch's default init (Kaiming uniform) vs jaxrl's orthogonal torso"),
        ("sb3", "gymnasium's NumPy CartPole-v1 in a DummyVecEnv (same dynamics, different implementation)"),
        ("sbx", "Huber loss, hard-coded"),
        ("sbx", "`net_arch` [120, 84] is read as its first entry only: the Q-network is 120-120 ReLU"),
        ("sbx", "no `max_grad_norm` argument; no clipping, as asked"),
    ),
}


# ---- pure helpers ------------------------------------------------------------------------

def aggregate_processes(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One population measurement from concurrent single-seed processes: SPS and memory summed
    (they ran at the same time), per-seed returns concatenated, compile seconds their median.
    Any failed process fails the whole measurement."""
    failed = [record for record in records if record.get("status") != "ok"]
    if failed:
        return {"status": failed[0].get("status", "error"), "error": failed[0].get("error", "unknown"),
                "processes": list(records)}
    compiles = [record["compile_seconds"] for record in records if record.get("compile_seconds") is not None]
    return {
        "status": "ok", "processes": list(records), "concurrent_processes": len(records),
        "steady_sps": sum(record["steady_sps"] for record in records),
        "compile_seconds": statistics.median(compiles) if compiles else None,
        "env_steps_per_seed": min(record["env_steps_per_seed"] for record in records),
        "final_eval": {"per_seed": [value for record in records for value in record["final_eval"]["per_seed"]]},
        "peak_rss_mib": sum(record["peak_rss_mib"] for record in records),
        "process_seconds": max(record.get("process_seconds", 0.0) for record in records),
        "versions": records[0].get("versions", {}),
        "learn_overlap": learn_overlap([record["learn_window"] for record in records if "learn_window" in record]),
    }


def learn_overlap(windows: Sequence[Sequence[float]]) -> float | None:
    """The share of the longest `learn()` window (start, end) during which every process was
    learning: near 1 when summing their SPS is fair."""
    if not windows:
        return None
    common_span = min(end for _, end in windows) - max(start for start, _ in windows)
    return max(0.0, common_span) / max(end - start for start, end in windows)


def population_sizes(workload: Workload, budget: str) -> tuple[int, int]:
    """The two population sizes of a workload's rows: 1 and its population (tiny: 1 and 2)."""
    return (1, 2) if budget == "tiny" else (1, workload.population)


def steps_for(workload: Workload, budget: str, system: str, seeds: int) -> int:
    """Env steps per seed of one row: SB3/sbx processes get the process budget, JAX systems the
    single-seed or population budget."""
    plan = workload.steps[budget]
    if system in ("sb3", "sbx"):
        return plan.process
    return plan.single if seeds == 1 else plan.population


def concurrent_processes(seeds: int, cores: int) -> int:
    """How many single-seed SB3/sbx processes a population row measures at once: one per core
    (the population would run as waves of this many), never more than the seeds."""
    return max(1, min(seeds, cores))


def seeds_cell(system: str, seeds: int, processes: int | None) -> str:
    """The seeds column; SB3/sbx populations say how they were measured."""
    if system in ("sb3", "sbx") and seeds > 1:
        return f"{seeds} (as {processes} concurrent 1-seed processes)"
    return str(seeds)


def peer_mode(peer: str, seeds: int, mode: str) -> str:
    """How the peer trained the seeds a ratio compares against."""
    if peer in ("rejax", "reference"):
        return "one vmapped program"
    return PEER_MODES[mode] if seeds > 1 else "one process"


def row_cells(workload: Workload, row: dict[str, Any], ratio: dict[str, float] | None) -> str:
    """One line of the main table."""
    lead = (f"| {workload.title} | {LABELS[row['system']]} "
            f"| {seeds_cell(row['system'], row['seeds'], row.get('concurrent_processes'))} ")
    if row.get("status") != "ok" or not row.get("repeats"):
        reason = str(row.get("error", row.get("status", "")))[:160].replace("|", "/")
        return lead + f"| {row.get('requested_steps_per_seed', 0):,} | – | {reason} | – | – | – |"
    low, high = row.get("steady_sps_range", (None, None))
    ratio_text = "–" if ratio is None else fmt_range(ratio["median"], ratio["min"], ratio["max"], 2, "×")
    return (lead + f"| {row['env_steps_per_seed']:,} | {common.fmt(row.get('compile_seconds'), 1)} "
            f"| {fmt_range(row['steady_sps'], low, high)} | {ratio_text} "
            f"| {eval_cell(row.get('final_eval', {}).get('per_seed'))} | {common.fmt(row.get('peak_rss_mib'))} |")


def ratio_rows(rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """jaxrl / peer SPS per repeat, summarised, for every peer row: at equal population size
    (`same size`), and for SB3/sbx populations also against one single-seed process at a time
    (`one at a time`: how their users train seeds, each after the last)."""
    def ratio(workload: str, seeds: int, peer: str, peer_seeds: int, mode: str) -> dict[str, Any]:
        ours = [run for run in runs if run["system"] == "jaxrl" and (run["workload"], run["seeds"]) == (workload, seeds)]
        theirs = [run for run in runs if run["system"] == peer and (run["workload"], run["seeds"]) == (workload, peer_seeds)]
        values = paired_ratios(ours, theirs)
        return {"workload": workload, "peer": peer, "seeds": seeds, "mode": mode, "ratios": values,
                "summary": summary(values)}

    out = []
    for row in rows:
        if row["system"] == "jaxrl":
            continue
        out.append(ratio(row["workload"], row["seeds"], row["system"], row["seeds"], "same size"))
        if row["system"] in ("sb3", "sbx") and row["seeds"] > 1:
            out.append(ratio(row["workload"], row["seeds"], row["system"], 1, "one at a time"))
    return out


# ---- peer settings, derived from the jaxrl config ------------------------------------------

def load_config(workload: Workload, config_dir: Path, budget: str) -> Any:
    """The workload's jaxrl config with the budget's overrides (what every system is set to)."""
    from jaxrl.config import load

    return load(config_dir / workload.config, list(workload.steps[budget].overrides))


def gradient_steps_per_update(algo: Any, num_envs: int) -> int:
    """DQN gradient steps after each step of every env copy (replay_ratio × env steps)."""
    return max(1, round(algo.replay_ratio * num_envs * algo.rollout_steps))


def rejax_spec(config: Any, seeds: int, steps: int, eval_episodes: int) -> dict[str, Any]:
    """rejax's `create()` arguments (its own names) and the worker's extras for this config."""
    algo, env = config.algo, config.env
    common_settings = {"env": env.id, "num_envs": env.num_envs, "gamma": algo.gamma, "total_timesteps": steps,
                       "eval_freq": steps, "skip_initial_evaluation": True,
                       "normalize_observations": env.normalize_obs}
    if algo.name == "ppo":
        settings = {**common_settings, "num_steps": algo.num_steps, "num_epochs": algo.num_epochs,
                    "num_minibatches": algo.num_minibatches, "gae_lambda": algo.gae_lambda,
                    "clip_eps": algo.clip_eps, "ent_coef": algo.ent_coef, "vf_coef": algo.vf_coef,
                    "max_grad_norm": algo.max_grad_norm,
                    "agent_kwargs": {"activation": algo.network.activation,
                                     "hidden_layer_sizes": list(algo.network.hidden_sizes)}}
        extras: dict[str, Any] = {}
    else:
        settings = {**common_settings, "buffer_size": algo.buffer_size, "fill_buffer": algo.learning_starts,
                    "batch_size": algo.batch_size, "num_epochs": gradient_steps_per_update(algo, env.num_envs),
                    "target_update_freq": algo.target_update_every, "polyak": 1.0 - algo.tau,
                    "eps_start": algo.eps_start, "eps_end": algo.eps_end,
                    "exploration_fraction": algo.eps_decay_fraction, "ddqn": algo.double}
        if algo.max_grad_norm > 0:  # rejax's default (inf) is "no clipping"
            settings["max_grad_norm"] = algo.max_grad_norm
        extras = {"hidden_layer_sizes": list(algo.network.hidden_sizes), "activation": algo.network.activation}
    return {"algo": algo.name, "seeds": seeds, "lr": algo.lr, "anneal_lr": bool(algo.anneal_lr),
            "eval_episodes": eval_episodes, "settings": settings, **extras,
            "result_prefix": common.RESULT_PREFIX}


def reference_spec(config: Any, seeds: int, steps: int, eval_episodes: int) -> dict[str, Any]:
    """The single-file reference's config keys (PureJaxRL's names) for this config."""
    algo, env = config.algo, config.env
    settings = {"ENV_NAME": env.id, "NUM_ENVS": env.num_envs, "TOTAL_TIMESTEPS": steps, "LR": algo.lr,
                "GAMMA": algo.gamma}
    if algo.name == "ppo":
        settings |= {"NUM_STEPS": algo.num_steps, "UPDATE_EPOCHS": algo.num_epochs,
                     "NUM_MINIBATCHES": algo.num_minibatches, "GAE_LAMBDA": algo.gae_lambda,
                     "CLIP_EPS": algo.clip_eps, "ENT_COEF": algo.ent_coef, "VF_COEF": algo.vf_coef,
                     "MAX_GRAD_NORM": algo.max_grad_norm, "ADAM_EPS": algo.adam_eps, "ANNEAL_LR": bool(algo.anneal_lr)}
    else:
        env_steps_per_gradient_step = env.num_envs * algo.rollout_steps / gradient_steps_per_update(algo, env.num_envs)
        settings |= {"BUFFER_SIZE": algo.buffer_size, "BUFFER_BATCH_SIZE": algo.batch_size,
                     "EPSILON_START": algo.eps_start, "EPSILON_FINISH": algo.eps_end,
                     "EPSILON_ANNEAL_TIME": int(algo.eps_decay_fraction * steps),
                     "TARGET_UPDATE_INTERVAL": algo.target_update_every, "LEARNING_STARTS": algo.learning_starts,
                     "TRAINING_INTERVAL": max(1, round(env_steps_per_gradient_step)), "TAU": algo.tau}
    return {"algo": algo.name, "seeds": seeds, "config": settings, "eval_episodes": eval_episodes,
            "result_prefix": common.RESULT_PREFIX}


def sb3_spec(config: Any, library: str, seed: int, steps: int, eval_episodes: int) -> dict[str, Any]:
    """SB3's (or sbx's) constructor arguments (their own names) for this config and one seed."""
    algo, env = config.algo, config.env
    hidden = list(algo.network.hidden_sizes)
    policy: dict[str, Any] = {"activation": algo.network.activation, "optimizer_kwargs": {"eps": algo.adam_eps}}
    if algo.name == "ppo":
        kwargs = {"n_steps": algo.num_steps, "batch_size": env.num_envs * algo.num_steps // algo.num_minibatches,
                  "n_epochs": algo.num_epochs, "gamma": algo.gamma, "gae_lambda": algo.gae_lambda,
                  "clip_range": algo.clip_eps, "clip_range_vf": algo.clip_eps if algo.clip_value_loss else None,
                  "ent_coef": algo.ent_coef, "vf_coef": algo.vf_coef, "max_grad_norm": algo.max_grad_norm,
                  "normalize_advantage": algo.normalize_advantages}
        policy.update(net_arch=hidden if algo.network.shared else {"pi": hidden, "vf": hidden}, ortho_init=True)
    else:
        kwargs = {"buffer_size": algo.buffer_size, "learning_starts": algo.learning_starts,
                  "batch_size": algo.batch_size, "tau": algo.tau, "gamma": algo.gamma,
                  "train_freq": algo.rollout_steps, "gradient_steps": gradient_steps_per_update(algo, env.num_envs),
                  "target_update_interval": algo.target_update_every,
                  "exploration_fraction": algo.eps_decay_fraction, "exploration_initial_eps": algo.eps_start,
                  "exploration_final_eps": algo.eps_end}
        if library == "sb3":  # sbx's DQN has no such argument (and never clips)
            kwargs["max_grad_norm"] = algo.max_grad_norm if algo.max_grad_norm > 0 else None
        policy["net_arch"] = hidden
    return {"library": library, "algo": algo.name, "env": env.id, "num_envs": env.num_envs, "seed": seed,
            "steps": steps, "lr": algo.lr, "anneal_lr": bool(algo.anneal_lr), "kwargs": kwargs,
            "policy": policy, "eval_episodes": eval_episodes, "threads": 1,
            "result_prefix": common.RESULT_PREFIX}


def jaxrl_spec(workload: Workload, config_dir: Path, budget: str, seeds: int, steps: int) -> dict[str, Any]:
    """The `jaxrl.bench.worker` spec: the reference config, the budget's overrides, about four
    chunks (steady SPS leaves out the first) and the evaluation only at the end."""
    overrides = [*workload.steps[budget].overrides, f"log_every_env_steps={max(1, steps // 4)}",
                 "eval.every_env_steps=0", "checkpoint.every_env_steps=0"]
    return {"config": str(config_dir / workload.config), "overrides": overrides, "seeds": seeds, "steps": steps}


# ---- environments and processes -----------------------------------------------------------

def cache_folder() -> Path:
    """Where the suite keeps peer virtual environments: `$JAXRL_BENCH_CACHE` or ~/.cache/jaxrl/bench."""
    root = os.environ.get("JAXRL_BENCH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "jaxrl" / "bench"


def rejax_requirements() -> list[str]:
    """rejax, the gymnax it needs, and this environment's JAX stack pinned (GPU plugins too,
    where installed here), so both JAX systems run the same jax/jaxlib/flax/optax on the same devices."""
    pins = [f"rejax=={REJAX_VERSION}", f"gymnax=={REJAX_GYMNAX}"]
    for name in ("jax", "jaxlib", "flax", "optax"):
        version = common.package_version(name)
        pins.append(name if version == "not installed" else f"{name}=={version}")
    for name in ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt"):
        version = common.package_version(name)
        if version != "not installed":
            pins.append(f"{name}=={version}")
    return pins


def venv_python(folder: Path) -> Path:
    """The interpreter of a virtual environment."""
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_marker(requirements: Sequence[str]) -> dict[str, list[str]]:
    """What a finished environment records: its requirements and the parent site-packages it
    sees (an environment made by another, since deleted, install of jaxrl sees no JAX at all)."""
    return {"requirements": list(requirements), "parent": list(site.getsitepackages())}


def venv_complete(folder: Path, requirements: Sequence[str]) -> bool:
    """True when `folder` holds a finished install of exactly `requirements` that sees this
    environment's packages (its marker says so)."""
    marker = folder / "jaxrl-complete.json"
    try:
        return venv_python(folder).exists() and json.loads(marker.read_text()) == venv_marker(requirements)
    except (OSError, ValueError):
        return False


def ensure_rejax_venv(timeout: float = INSTALL_TIMEOUT) -> tuple[Path | None, str | None]:
    """The rejax environment's interpreter, creating the environment first if it is missing or
    incomplete (under a file lock, so concurrent suites do not race); or None and the reason."""
    import fcntl

    folder = cache_folder() / f"rejax-{REJAX_VERSION}"
    requirements = rejax_requirements()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f"{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if venv_complete(folder, requirements):
                return venv_python(folder), None
            return install_venv(folder, requirements, timeout)
    except OSError as error:
        return None, f"rejax environment: {error}"


# Run by the new environment's interpreter with this one's site-packages folders as arguments:
# a .pth file appends them to its sys.path, after its own site-packages, so the pinned JAX stack
# is this very install (pip sees it satisfied and installs only rejax, distrax and the older
# gymnax, which shadow ours) -- seconds instead of minutes of downloading jaxlib again.
SEE_PARENT_PACKAGES = ("import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], "
                       "'jaxrl-parent.pth').write_text(''.join(p + chr(10) for p in sys.argv[1:]))")


def install_venv(folder: Path, requirements: Sequence[str], timeout: float) -> tuple[Path | None, str | None]:
    """Creates a fresh virtual environment in `folder` that sees this environment's packages
    behind its own, and pip-installs `requirements` into it; marks it complete only when every
    step succeeds. Returns its interpreter, or None and the reason."""
    common.progress(f"creating the rejax environment in {folder} ({' '.join(requirements)})")
    shutil.rmtree(folder, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(folder)],
             [str(venv_python(folder)), "-c", SEE_PARENT_PACKAGES, *site.getsitepackages()],
             [str(venv_python(folder)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              *requirements]]
    start = time.perf_counter()
    for command in steps:
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=max(1.0, timeout - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            return None, f"rejax environment: `{' '.join(command[2:4])}` took over {timeout:.0f} s"
        if done.returncode != 0:
            tail = [line for line in (done.stderr or done.stdout).splitlines()
                    if line.strip() and not line.startswith("WARNING: Location")][-2:]
            return None, f"rejax environment: `{' '.join(command[2:4])}` failed: " + " | ".join(tail)
    (folder / "jaxrl-complete.json").write_text(json.dumps(venv_marker(requirements)))
    common.progress(f"rejax environment ready ({time.perf_counter() - start:.0f} s)")
    return venv_python(folder), None


def missing_peers() -> dict[str, str]:
    """SB3/sbx systems that cannot run in this environment, with the reason."""
    import importlib.util

    return {system: PEERS_EXTRA for system, module in (("sb3", "stable_baselines3"), ("sbx", "sbx"))
            if importlib.util.find_spec(module) is None}


def peer_env(one_program: bool = False) -> dict[str, str]:
    """A peer process's environment: one XLA CPU device, no compilation cache, no GPU memory
    preallocation (several processes may share a GPU); unless it trains the population as
    `one_program` (rejax, the reference: JAX's default threading), SB3/sbx also get one thread
    per library (`--xla_cpu_multi_thread_eigen=false`, OMP/MKL 1), since one runs per core."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "PYTHONPATH")}
    env.update(JAX_NUM_CPU_DEVICES="1", JAX_ENABLE_COMPILATION_CACHE="false",
               XLA_PYTHON_CLIENT_PREALLOCATE="false", TF_CPP_MIN_LOG_LEVEL="2")
    if not one_program:
        env.update(XLA_FLAGS="--xla_cpu_multi_thread_eigen=false", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_population(python: Path | str, worker: str, spec: dict[str, Any], timeout: float,
                   record: dict[str, Any]) -> dict[str, Any]:
    """One rejax or reference population (`worker`: its script in peer_workers/) in a fresh
    process of `python` (the rejax environment's interpreter, or this one)."""
    return common.run_in_process([str(python), str(WORKERS / worker), json.dumps(spec)],
                                 peer_env(one_program=True), timeout, record, cwd=WORKERS)


def run_sb3(specs: Sequence[dict[str, Any]], timeout: float, record: dict[str, Any]) -> dict[str, Any]:
    """Single-seed SB3/sbx processes, all started at once and starting `learn()` together (a
    file barrier); `record` gains their aggregate."""
    def one(spec: dict[str, Any]) -> dict[str, Any]:
        return common.run_in_process([sys.executable, str(WORKERS / "sb3_worker.py"), json.dumps(spec)],
                                     peer_env(), timeout, {"seed": spec["seed"]}, cwd=WORKERS)

    with tempfile.TemporaryDirectory(prefix="jaxrl-peers-") as folder:
        barrier = {"dir": folder, "parties": len(specs), "timeout": min(120.0, timeout / 2)}
        specs = [spec | {"barrier": barrier} if len(specs) > 1 else spec for spec in specs]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(specs)) as pool:
            records = list(pool.map(one, specs))
    record.update(aggregate_processes(records))
    return record


# ---- the suite ------------------------------------------------------------------------------

def measure(system: str, workload: Workload, config: Any, config_dir: Path, budget: str, seeds: int,
            repeat: int, timeout: float, rejax_python: Path | None, unavailable: dict[str, str],
            cores: int) -> dict[str, Any]:
    """One (system, workload, population size) measurement of one repeat."""
    steps = steps_for(workload, budget, system, seeds)
    record: dict[str, Any] = {"workload": workload.name, "system": system, "seeds": seeds, "repeat": repeat,
                              "requested_steps_per_seed": steps}
    if system in unavailable:
        return record | {"status": "unavailable", "error": unavailable[system]}
    episodes = config.eval.episodes
    if system == "jaxrl":
        spec = jaxrl_spec(workload, config_dir, budget, seeds, steps)
        return common.run_jaxrl(spec, timeout, record | {"spec": spec})
    if system == "reference":
        spec = reference_spec(config, seeds, steps, episodes)
        return run_population(sys.executable, "reference_worker.py", spec, timeout, record | {"spec": spec})
    if system == "rejax":
        spec = rejax_spec(config, seeds, steps, episodes)
        return run_population(rejax_python, "rejax_worker.py", spec, timeout, record | {"spec": spec})
    specs = [sb3_spec(config, system, seed, steps, episodes)
             for seed in range(concurrent_processes(seeds, cores))]
    return run_sb3(specs, timeout, record | {"spec": specs[0]})


def brief(record: dict[str, Any]) -> str:
    """A one-line progress note for one measurement."""
    if record.get("status") != "ok":
        return f"{record.get('status')}: {str(record.get('error'))[:300]}"
    per_seed = record.get("final_eval", {}).get("per_seed") or []
    return (f"{record['steady_sps']:,.0f} SPS, compile {common.fmt(record.get('compile_seconds'), 1)} s, "
            f"greedy eval {eval_cell(per_seed)}, process {record.get('process_seconds', 0):.0f} s")


def peer_versions(runs: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Versions of the peer libraries that ran (rejax's from its own environment)."""
    versions = {name: common.package_version(dist) for name, dist in
                (("stable-baselines3", "stable-baselines3"), ("sbx-rl", "sbx-rl"), ("torch", "torch"))}
    for run in runs:
        if run["system"] == "rejax" and run.get("status") == "ok":
            versions.update({f"rejax env {k}" if k != "rejax" else k: v for k, v in run["versions"].items()})
            break
    return versions


def plan_text(workload: Workload, budget: str) -> str:
    """One workload's budget in words, for the header."""
    plan = workload.steps[budget]
    text = (f"{workload.title}: JAX systems {plan.single:,} steps/seed at 1 seed and {plan.population:,} at "
            f"{population_sizes(workload, budget)[1]} seeds, SB3/sbx {plan.process:,} per process")
    return text + (f" (all systems: `{' '.join(plan.overrides)}`)" if plan.overrides else "")


def notes(budget: str, cores: int, versions: dict[str, str], workloads: Sequence[Workload] = WORKLOADS
          ) -> list[str]:
    """The header's notes: what ran where, and how each number was taken."""
    plans = "; ".join(plan_text(workload, budget) for workload in workloads)
    return [
        "peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"budgets: {plans}",
        "same hyperparameters everywhere, taken from `configs/ppo_cartpole_reference.yaml` and "
        "`configs/dqn_cartpole_reference.yaml` and mapped to each library's own argument names; "
        "differences each peer cannot remove are listed below the tables",
        "jaxrl: `jaxrl.bench.worker` (exactly `jaxrl train`, one XLA device per core, Eigen threads off); steady "
        "SPS leaves out compile, the first of four chunks and evaluation (for DQN that chunk holds the cheap "
        "steps before learning starts, which the peers' SPS include: in their favour)",
        "reference: the in-repo single-file PPO/DQN in PureJaxRL's style (`jaxrl/bench/peer_workers/reference_*.py`, "
        "independent of jaxrl's algorithms), settings taken from the same config, `jax.jit(jax.vmap(make_train(config)))` "
        "on one XLA CPU device with JAX's default threading, timed as rejax is (below)",
        f"rejax: its own virtual environment (gymnax {REJAX_GYMNAX}; jax, flax and optax are jaxrl's install), `jax.jit(jax.vmap(algo.train))` on one XLA "
        "CPU device with JAX's default threading; compile = `lower().compile()`; SPS = seeds × steps / seconds "
        "of the compiled call (init + training, in-training evaluation switched off)",
        f"SB3 / sbx: one seed per process (torch 1 thread; sbx one XLA device, Eigen threads off); a population "
        f"row runs min(seeds, {cores}) such processes at once (one per core) and sums their SPS: that is the "
        "population's throughput when run in waves of one process per core (not all of its seeds are trained; "
        "the JSON's `learn_overlap` says how much their `learn()` windows overlapped). SPS = env steps / wall "
        "time of `learn()`; sbx's compile s = the tracing/lowering/compiling JAX reports during `learn()`, "
        "left out of its SPS; SB3 compiles nothing; memory = the processes' peak RSS summed",
        "greedy eval: mean / IQM over seeds of each seed's mean return over 10 greedy episodes after training "
        "(jaxrl: its evaluator; reference: argmax actions in a scan; rejax: `rejax.evaluate` with argmax actions; SB3/sbx: "
        "`evaluate_policy(deterministic=True)`); SB3/sbx rows evaluate only the seeds they trained; returns "
        "compare only between rows with equal env steps per seed",
        "ours/theirs: jaxrl's steady SPS over the peer's at the same population size, computed within each repeat "
        "(systems interleaved, so a pair saw the same machine state); median [min–max] over repeats",
    ]


def render(machine: dict[str, Any], budget: common.Budget, rows: list[dict[str, Any]],
           ratios: list[dict[str, Any]], versions: dict[str, str]) -> str:
    """The suite's Markdown report."""
    cores = machine.get("cpu_count") or os.cpu_count() or 1
    measured = [w for w in WORKLOADS if any(row["workload"] == w.name for row in rows)]
    lines = common.header("Peers: jaxrl vs a single-file reference, rejax, stable-baselines3 and sbx on identical settings",
                          machine, budget, notes(budget.name, cores, versions, measured))
    by_key = {(r["workload"], r["peer"], r["seeds"]): r["summary"] for r in ratios if r["mode"] == "same size"}
    titles = {w.name: w for w in WORKLOADS}
    lines += ["| workload | system | seeds | env steps / seed | compile s | steady SPS median [min–max] "
              "| ours / theirs SPS | greedy eval mean / IQM | peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [row_cells(titles[row["workload"]], row, by_key.get((row["workload"], row["system"], row["seeds"])))
              for row in rows]
    lines += ["", "## Ratios (jaxrl / peer, steady SPS)", "",
              "| workload | pair | seeds | peer runs them | ours / theirs median [min–max] | repeats |",
              "|---|---|---|---|---|---|"]
    for ratio in ratios:
        s = ratio["summary"]
        cell = "–" if s is None else fmt_range(s["median"], s["min"], s["max"], 2, "×")
        how = peer_mode(ratio["peer"], ratio["seeds"], ratio["mode"])
        lines.append(f"| {titles[ratio['workload']].title} | jaxrl / {LABELS[ratio['peer']]} | {ratio['seeds']} "
                     f"| {how} | {cell} | {0 if s is None else s['n']} |")
    lines += ["", "## Differences that remain", ""]
    for workload in WORKLOADS:
        if any(row["workload"] == workload.name for row in rows):
            lines += [f"{workload.title}:", ""]
            lines += [f"- {LABELS[system]}: {text}" for system, text in DIFFERENCES[workload.algo]]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot(ratios: list[dict[str, Any]], machine: dict[str, Any]):
    """A figure writer: jaxrl/peer SPS ratios per pair as bars (log scale), repeat range as error bars."""

    def write(out_dir: Path) -> Path | None:
        from jaxrl.analysis.plots import _pyplot, _save

        shown = [r for r in ratios if r["summary"] is not None and r["mode"] == "same size"]
        if not shown:
            return None
        plt = _pyplot()
        titles = {w.name: w.title for w in WORKLOADS}
        colours = {"reference": "tab:purple", "rejax": "tab:blue", "sb3": "tab:orange", "sbx": "tab:green"}
        fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(shown) + 2), 4.8))
        centers = [r["summary"]["median"] for r in shown]
        lower = [c - r["summary"]["min"] for c, r in zip(centers, shown)]
        upper = [r["summary"]["max"] - c for c, r in zip(centers, shown)]
        positions = range(len(shown))
        ax.bar(positions, centers, color=[colours[r["peer"]] for r in shown], yerr=[lower, upper], capsize=3)
        ax.axhline(1.0, color="black", linewidth=0.8)
        for x, r in zip(positions, shown):
            ax.annotate(f"{r['summary']['median']:.2g}×", (x, r["summary"]["max"]), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(list(positions))
        ax.set_xticklabels([f"{titles[r['workload']].split()[0]}\n{r['seeds']} seed{'s' * (r['seeds'] > 1)}"
                            for r in shown], fontsize=7)
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in colours.values()]
        ax.legend(handles, [f"vs {LABELS[peer]}" for peer in colours], fontsize=8, ncol=4,
                  loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
        ax.set(yscale="log", ylabel="jaxrl SPS / peer SPS (median, repeat range)",
               title=f"jaxrl vs peers on {machine['kind']} (above 1: jaxrl faster)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        return _save(fig, out_dir / "peers_ratios.png")

    return write


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None) -> list[Path]:
    """Measures every workload (or `only` those) for every system and population size,
    interleaving the systems within each repeat; writes `peers.md/.json/_ratios.png` into
    `out_dir` after each repeat and prints the table."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    workloads = [w for w in WORKLOADS if not only or w.name in only]
    cores = os.cpu_count() or 1
    unavailable = missing_peers()
    rejax_python, why = ensure_rejax_venv()
    if why:
        unavailable["rejax"] = why
    configs = {w.name: load_config(w, config_dir, budget.name) for w in workloads}
    runs: list[dict[str, Any]] = []
    written: list[Path] = []
    markdown = ""
    for repeat in range(budget.repeats):
        for workload in workloads:
            for seeds in population_sizes(workload, budget.name):
                for system in SYSTEMS:
                    common.progress(f"{workload.name} {LABELS[system]} {seeds} seed(s) "
                                    f"({repeat + 1}/{budget.repeats})")
                    runs.append(measure(system, workload, configs[workload.name], config_dir, budget.name, seeds,
                                        repeat, timeout, rejax_python, unavailable, cores))
                    common.progress("  " + brief(runs[-1]))
        rows = [common.median_of(group) | {"system": group[0]["system"]} for group in grouped(runs)]
        ratios = ratio_rows(rows, runs)
        versions = peer_versions(runs)
        markdown = render(machine, budget, rows, ratios, versions)
        payload = {"machine": machine, "budget": budget._asdict(), "peer_versions": versions,
                   "plan": {w.name: w.steps[budget.name]._asdict() for w in workloads},
                   "differences": {k: [list(d) for d in v] for k, v in DIFFERENCES.items()},
                   "rows": [strip_processes(row) for row in rows], "ratios": ratios, "runs": runs}
        written = common.write_report(out_dir, "peers", markdown, payload, [plot(ratios, machine)])
    print(markdown)
    return written


def grouped(runs: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Runs grouped by (workload, population size, system), in the order first measured."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["workload"], run["seeds"], run["system"]), []).append(run)
    return list(groups.values())


def strip_processes(row: dict[str, Any]) -> dict[str, Any]:
    """A summary row without its per-process records (they stay in `runs`)."""
    return {k: v for k, v in row.items() if k not in ("processes", "spec")}
