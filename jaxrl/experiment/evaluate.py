"""`jaxrl eval`: load a run's checkpoint and evaluate every member on fresh episodes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl import sweep as sweep_lib
from jaxrl.analysis import aggregate
from jaxrl.errors import ConfigError, RunDirError
from jaxrl.config import Config
from jaxrl.experiment.checkpoints import Checkpointer, Restored, written_by
from jaxrl.experiment.run_dir import write_json
from jaxrl.experiment.assemble import Built, build, host_stand_in, make_env, make_population


class LoadedRun(NamedTuple):
    config: Config
    built: Built
    population: population.Driver
    restored: Restored


def load_run(run_dir: Path, *, episodes: int | None = None, deterministic: bool | None = None,
             seed_index: int | None = None, devices: Sequence[Any] | None = None) -> LoadedRun:
    """A run's config (with evaluation overrides) and its newest readable checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a jaxrl run folder (it has no config.yaml)")
    config = config_lib.load(run_dir / "config.yaml")
    changes = {}
    if episodes is not None:
        changes["episodes"] = episodes
    if deterministic is not None:
        changes["deterministic"] = deterministic
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, **changes))
    if sweep_lib.split(config.sweep)[1]:
        raise RunDirError(f"{run_dir} is a sweep over static fields: one run folder per program "
                          f"inside it; evaluate one of those (e.g. {run_dir}/<program>)")
    lay = sweep_lib.layout(config)
    if seed_index is not None and not 0 <= seed_index < lay.members:
        raise ConfigError(f"--seed-index {seed_index} is out of range: the run has members "
                          f"0..{lay.members - 1}")
    built = build(config)
    pop = make_population(config, built, devices)
    hparams = population.broadcast_hparams(built.algo.default_hparams, lay.members)
    abstract = pop.members.abstract_state(population.stream_keys(config.seed, lay.members, 0), hparams)
    checkpointer = Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        restored = checkpointer.restore_latest(abstract, written_by(config))
    finally:
        checkpointer.close()
    restored = restored._replace(state=pop.members.from_saved(restored.state))
    return LoadedRun(config, built, pop, restored)


def evaluate_run(run_dir: str | Path, *, episodes: int | None = None,
                 deterministic: bool | None = None, seed_index: int | None = None,
                 devices: Sequence[Any] | None = None) -> dict[str, Any]:
    """Evaluates the newest readable checkpoint of `run_dir`; writes `evaluations/<time>.json`.

    With the run's own episode count and policy mode, the returns equal the run's final
    evaluation (same keys), which makes the checkpoint's content checkable.
    """
    run_dir = Path(run_dir)
    config, built, pop, restored = load_run(run_dir, episodes=episodes, deterministic=deterministic,
                                            seed_index=seed_index, devices=devices)
    eval_keys = population.stream_keys(config.seed, pop.members.num_members, population.EVAL_STREAM,
                                       pop.members.seed_index)
    chunk = int(restored.progress.get("chunk", 0))
    keys = jax.vmap(lambda k: jax.random.fold_in(k, chunk))(eval_keys)
    try:
        returns = np.asarray(jax.device_get(pop.evaluate(restored.state, keys)))  # [seeds, episodes]
    finally:
        pop.close()
    per_seed = returns.mean(axis=1)
    chosen = list(range(pop.members.num_members)) if seed_index is None else [seed_index]
    result = {
        "run_dir": str(run_dir), "checkpoint_update": restored.step,
        "env_steps_per_seed": restored.progress.get("env_steps"),
        "episodes_per_seed": config.eval.episodes, "deterministic": config.eval.deterministic,
        "seeds": chosen, "per_seed": [round(float(per_seed[i]), 3) for i in chosen],
        "episode_returns": {str(i): [round(float(r), 3) for r in returns[i]] for i in chosen},
        **aggregate(per_seed[chosen]),
    }
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    (run_dir / "evaluations").mkdir(exist_ok=True)
    write_json(run_dir / "evaluations" / f"{stamp}.json", result)
    return result


def format_evaluation(result: dict[str, Any]) -> str:
    """The table `jaxrl eval` prints."""
    mode = "greedy" if result["deterministic"] else "stochastic"
    lines = [f"{mode} evaluation of {result['run_dir']} at update {result['checkpoint_update']} "
             f"({result['episodes_per_seed']} episodes per seed):"]
    lines += [f"  seed {seed:>4}: {value:9.2f}" for seed, value in zip(result["seeds"], result["per_seed"])]
    if len(result["seeds"]) > 1:
        lines.append(f"  mean {result['mean']:.1f}   std {result['std']:.1f}   IQM {result['iqm']:.1f} "
                     f"[95% CI {result['iqm_ci_low']:.1f}, {result['iqm_ci_high']:.1f}]   "
                     f"min {result['min']:.1f}   max {result['max']:.1f}")
    return "\n".join(lines)


def _summarise(values: np.ndarray) -> str:
    """Small observations in full; larger ones as shape and range."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size <= 8:
        return "[" + " ".join(f"{v:+.3f}" for v in flat) + "]"
    return f"{tuple(np.shape(values))} mean {flat.mean():+.3f} min {flat.min():+.3f} max {flat.max():+.3f}"


def _base_state(state: Any) -> Any:
    """The single env's state inside our wrapper states, for copy 0 (renderers want it)."""
    while hasattr(state, "inner"):
        state = state.inner
    return jax.tree.map(lambda x: np.asarray(x)[0], state)


def _episode_row(t: int, obs: Any, action: Any, reward: float, episode_return: float,
                 terminated: bool, truncated: bool, extra: dict[str, Any]) -> dict[str, Any]:
    """One step of a played episode, as `--trace` prints it."""
    return {"t": t, "obs": _summarise(obs), "action": np.asarray(action).tolist(), "reward": reward,
            "return": episode_return, "terminated": terminated, "truncated": truncated, **extra}


def _member_policy(config: Config, algo: Any, state: Any, seed_index: int):
    """Member `seed_index`'s params, compiled act/explain, and its own evaluation key."""
    params = jax.tree.map(lambda x: np.asarray(x)[seed_index], algo.policy_params(state))
    act = jax.jit(algo.act, static_argnums=3)
    explain = jax.jit(algo.explain) if algo.explain is not None else None
    lay = sweep_lib.layout(config)
    keys = population.stream_keys(config.seed, lay.members, population.EVAL_STREAM, lay.seed_index)
    key = jax.random.fold_in(keys[seed_index], 2**20)
    return params, act, explain, key


def _notes(explain: Any, params: Any, obs: Any) -> dict[str, Any]:
    if explain is None:
        return {}
    return {k: np.asarray(v, np.float64)[0].tolist() for k, v in explain(params, obs).items()}


def play_episode(config: Config, algo: Any, state: Any, seed_index: int, max_steps: int = 1000
                 ) -> tuple[list[dict[str, Any]], list[Any]]:
    """One episode of member `seed_index` of a population `state`, stepped on the host: a row
    per step (observation as the agent sees it, action, raw reward, the env's `trace_info`
    entries of the step info, the algorithm's `explain`) and, for rendering, the env state
    before each step (jittable envs) or the rgb frame (gymnasium envs)."""
    if _is_host(config):
        return _play_gymnasium_episode(config, algo, state, seed_index, max_steps)
    params, act, explain, key = _member_policy(config, algo, state, seed_index)
    train_env_state = jax.tree.map(lambda x: np.asarray(x)[seed_index], algo.env_state(state))
    env, env_params = make_env(config, 1, update_stats=False)
    step = jax.jit(env.step)
    trace_info = getattr(env, "trace_info", ())  # env-specific step facts, e.g. MovieRec's click
    key, reset_key = jax.random.split(key)
    obs, env_state = env.reset_from(reset_key, env_params, train_env_state)
    rows, states = [], []
    for t in range(max_steps):
        states.append(_base_state(env_state))
        key, act_key, step_key = jax.random.split(key, 3)
        action = act(params, obs, act_key, config.eval.deterministic)
        notes = _notes(explain, params, obs)
        next_obs, env_state, reward, terminated, truncated, info = step(step_key, env_state, action, env_params)
        episode_return = float(info["episode_return"][0])
        rows.append(_episode_row(
            t, np.asarray(obs)[0], np.asarray(action)[0], episode_return - (rows[-1]["return"] if rows else 0.0),
            episode_return, bool(terminated[0]), bool(truncated[0]),
            {**{k: np.asarray(info[k])[0].tolist() for k in trace_info}, **notes}))
        obs = next_obs
        if bool(info["episode_done"][0]):
            break
    return rows, states


def _is_host(config: Config) -> bool:
    from jaxrl.envs import registered_ids
    from jaxrl.envs.host import resolve_backend

    return resolve_backend(config.env.id, config.env.backend, registered_ids()) != "jax"


def _gymnasium_env(config: Config, render: bool) -> Any:
    """One gymnasium env of the run's id (EnvPool runs use gymnasium's env of the same id)."""
    from jaxrl.env_worker import make_gymnasium_env
    from jaxrl.envs.host.gymnasium_pool import check_env_id

    check_env_id(config.env.id, config.env.kwargs, config.env.frame_stack).close()  # clear errors for bad ids/extras
    if render and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo draws headless through EGL (or osmesa, if set)
    return make_gymnasium_env(config.env.id, {**config.env.kwargs, **({"render_mode": "rgb_array"} if render else {})},
                              config.env.frame_stack)


def _play_gymnasium_episode(config: Config, algo: Any, state: Any, seed_index: int, max_steps: int
                            ) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """As `play_episode`, in one gymnasium env in this process, keeping its rgb frames."""
    params, act, explain, key = _member_policy(config, algo, state, seed_index)
    sees = _host_observation(config, algo, state, seed_index)
    env = _gymnasium_env(config, render=True)
    try:
        obs, _ = env.reset(seed=int(np.random.SeedSequence(np.asarray(key).ravel().tolist()).generate_state(1)[0]))
        rows, frames, episode_return = [], [], 0.0
        for t in range(max_steps):
            frames.append(env.render())
            key, act_key = jax.random.split(key)
            batch = sees(np.asarray(obs)[None])
            action = np.asarray(act(params, batch, act_key, config.eval.deterministic))[0]
            notes = _notes(explain, params, batch)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            rows.append(_episode_row(t, np.asarray(batch)[0], action, float(reward), episode_return,
                                     bool(terminated), bool(truncated), notes))
            obs = next_obs
            if terminated or truncated:
                break
        return rows, frames
    finally:
        env.close()


def _host_observation(config: Config, algo: Any, state: Any, seed_index: int) -> Any:
    """A host env's raw observations [1, ...] as member `seed_index`'s policy sees them: through
    the run's normalisation with its training statistics, frozen (as they are without one)."""
    if not config.env.normalize_obs:
        return lambda obs: obs
    from jaxrl.envs import registered_ids
    from jaxrl.envs.host import host_spec, resolve_backend

    backend = resolve_backend(config.env.id, config.env.backend, registered_ids())
    env, env_params = host_stand_in(config, host_spec(config.env.id, backend, config.env.kwargs,
                                                      config.env.frame_stack), 1)
    member = jax.tree.map(lambda x: np.asarray(x)[seed_index], algo.env_state(state))
    return jax.jit(lambda obs: env.reset_from(None, env_params._replace(obs=obs), member)[0])


def trace_episode(run_dir: str | Path, *, seed_index: int = 0, deterministic: bool | None = None,
                  max_steps: int = 1000) -> list[dict[str, Any]]:
    """One episode of one member, step by step (see `play_episode`)."""
    loaded = load_run(Path(run_dir), deterministic=deterministic, seed_index=seed_index)
    return play_episode(loaded.config, loaded.built.algo, loaded.restored.state, seed_index, max_steps)[0]


def record_videos(run_dir: str | Path, *, seed_index: int | None = None,
                  deterministic: bool | None = None, max_steps: int = 1000) -> Path:
    """Plays one episode per member (or only `seed_index`) and renders the best one to
    `videos/best_seed<i>_return<R>.gif` (`videos/seed<i>_return<R>.gif` for one member)."""
    run_dir = Path(run_dir)
    loaded = load_run(run_dir, deterministic=deterministic, seed_index=seed_index)
    config, algo = loaded.config, loaded.built.algo
    check_renderer(config)  # fails before any episode is played
    state = jax.device_get(loaded.restored.state)  # once, not once per member played
    seeds = range(sweep_lib.layout(config).members) if seed_index is None else [seed_index]
    episodes = [(i, *play_episode(config, algo, state, i, max_steps)) for i in seeds]
    best, rows, states = max(episodes, key=lambda e: e[1][-1]["return"])
    prefix = "best_" if seed_index is None else ""
    return render_episode(config, rows, states, run_dir / "videos" / f"{prefix}seed{best}")


def check_renderer(config: Config) -> None:
    """A clear error, before anything runs, when the config's env cannot be drawn."""
    if _is_host(config):
        env = _gymnasium_env(config, render=True)
        try:
            env.reset(seed=0)
            if env.render() is None:
                raise ConfigError(f"{config.env.id} draws no rgb_array frames, so --video cannot record it")
        except ImportError as error:
            raise ConfigError(f"videos of {config.env.id} need pygame: pip install 'jaxrl[video]' ({error})") from None
        except Exception as error:  # e.g. MuJoCo without an OpenGL context
            raise ConfigError(f"{config.env.id} could not draw a frame here ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); MuJoCo envs draw headless "
                              f"with MUJOCO_GL=egl (the default here) or MUJOCO_GL=osmesa") from None
        finally:
            env.close()
        return
    from jaxrl.experiment.video import renderer_for

    renderer_for(_single_env(config)[0], config.env.id)


def _single_env(config: Config) -> tuple[Any, Any]:
    env, env_params = make_env(config, 1, update_stats=False)
    while hasattr(env, "env"):
        env = env.env
    return env, env_params


def render_episode(config: Config, rows: list[dict[str, Any]], states: list[Any], stem: Path) -> Path:
    """Writes `<stem>_return<R>.gif`, one frame per step, titled with the return so far;
    `states` are env states (jittable envs) or rgb frames (gymnasium envs)."""
    from jaxrl.experiment.video import write_frames_gif, write_gif

    returns = np.cumsum([row["reward"] for row in rows])
    path = f"{stem}_return{rows[-1]['return']:.1f}.gif"
    if _is_host(config):
        return write_frames_gif(states, returns, path)
    env, env_params = _single_env(config)
    return write_gif(env, env_params, states, returns, path)


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(_fmt(v) for v in value) + "]"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_trace(rows: list[dict[str, Any]]) -> str:
    """One line per step, then how the episode ended."""
    extra = [k for k in rows[0] if k not in ("t", "obs", "action", "reward", "return", "terminated", "truncated")]
    lines = [f"{'t':>5}  {'action':>6}  {'reward':>8}  " + "  ".join(f"{k:>18}" for k in extra) + "  observation"]
    for row in rows:
        lines.append(f"{row['t']:>5}  {_fmt(row['action']):>6}  {row['reward']:>8.3f}  "
                     + "  ".join(f"{_fmt(row[k]):>18}" for k in extra) + f"  {row['obs']}")
    last = rows[-1]
    end = "terminated" if last["terminated"] else "truncated (time limit)" if last["truncated"] else "not finished"
    lines.append(f"episode {end} after {len(rows)} steps, return {last['return']:.2f} (raw rewards)")
    return "\n".join(lines)
