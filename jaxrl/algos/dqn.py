"""Deep Q-learning with every Rainbow part, each one a config flag, as pure functions of one agent.

Parts (Hessel et al., 2018), any subset: `double` (online net picks the next action, target
net values it), `dueling` (V + A - mean A), `prioritized` replay (p = (|delta| + eps)^alpha,
importance weights annealed from beta_start to 1), `n_steps` returns (stopping at episode
ends, bootstrapping at truncations), `distributional` C51 (num_atoms over [v_min, v_max]),
and `noisy` layers (factorised Gaussian, replacing epsilon-greedy). `rainbow: true` turns all
six on. They meet in three places only: the network (`QNetwork`), the buffer calls and the
target computation in `loss_fn`.

Read top to bottom: config -> state -> acting -> `collect` (env steps with `lax.scan`) ->
`store` (n-step transitions into the replay buffer) -> `learn` (gradient steps and target
update) -> `make`, which binds them to an env into an `Algorithm`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrl import buffers
from jaxrl.algos.base import Algorithm, GradSync, HostHooks, HostSteps, Metrics
from jaxrl.envs import describe_space, spaces
from jaxrl.errors import ConfigError
from jaxrl.networks import NetworkConfig, QNetwork, check_torso
from jaxrl.rl import categorical_projection, huber_loss, linear_anneal, linear_decay, n_step_targets

LOSSES = ("huber", "mse")
OPTIMIZERS = ("adam", "adamw")
RAINBOW_PARTS = ("double", "dueling", "prioritized", "distributional", "noisy")


class HParams(NamedTuple):
    """Hyperparameters that may differ between members of one population (vmappable)."""

    lr: chex.Array
    gamma: chex.Array
    tau: chex.Array
    eps_start: chex.Array
    eps_end: chex.Array
    eps_decay_fraction: chex.Array
    per_alpha: chex.Array
    per_beta_start: chex.Array
    max_grad_norm: chex.Array
    weight_decay: chex.Array


@dataclasses.dataclass(frozen=True)
class Config:
    """The `algo:` section for DQN. Fields of `HParams` are vmappable; the rest fix shapes."""

    name: str = "dqn"
    # optimisation
    lr: float = 2.5e-4
    anneal_lr: bool = False
    optimizer: str = "adam"  # adam | adamw
    amsgrad: bool = False
    weight_decay: float = 0.0  # adamw only
    adam_eps: float = 1e-8
    max_grad_norm: float = 0.0  # 0: no clipping
    loss: str = "mse"  # mse | huber (C51 always uses cross-entropy)
    gamma: float = 0.99
    # replay: each update steps every env copy `rollout_steps` times, then takes
    # replay_ratio x (env steps of the update) gradient steps on batches of `batch_size`
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 10_000  # transitions in the buffer before learning starts
    rollout_steps: int = 1
    replay_ratio: float = 0.1
    # target network: every `target_update_every` env steps, target <- tau * online + (1 - tau) * target
    target_update_every: int = 500
    tau: float = 1.0
    # epsilon-greedy: linear from eps_start to eps_end over eps_decay_fraction of the run
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_fraction: float = 0.5
    eval_epsilon: float = 0.05  # for `jaxrl eval --stochastic`
    # Rainbow parts
    rainbow: bool = False  # all six parts on (n_steps 3 unless set above 1)
    double: bool = False
    dueling: bool = False
    prioritized: bool = False
    per_alpha: float = 0.6
    per_beta_start: float = 0.4
    per_eps: float = 1e-6
    n_steps: int = 1
    distributional: bool = False
    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    noisy: bool = False
    noisy_sigma: float = 0.5
    network: NetworkConfig = NetworkConfig(hidden_sizes=(120, 84), activation="relu")

    def __post_init__(self):
        if self.rainbow:
            for part in RAINBOW_PARTS:
                object.__setattr__(self, part, True)
            if self.n_steps == 1:
                object.__setattr__(self, "n_steps", 3)
        checks = [
            (self.lr > 0, f"algo.lr must be positive, got {self.lr}"),
            (0.0 <= self.gamma <= 1.0, f"algo.gamma must lie in [0, 1], got {self.gamma}"),
            (self.optimizer in OPTIMIZERS,
             f"algo.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.loss in LOSSES, f"algo.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (self.weight_decay >= 0, f"algo.weight_decay must be >= 0, got {self.weight_decay}"),
            (self.weight_decay == 0 or self.optimizer == "adamw",
             f"algo.weight_decay={self.weight_decay} needs algo.optimizer: adamw"),
            (self.adam_eps > 0, f"algo.adam_eps must be positive, got {self.adam_eps}"),
            (self.max_grad_norm >= 0, f"algo.max_grad_norm must be >= 0 (0: off), got {self.max_grad_norm}"),
            (self.batch_size >= 1, f"algo.batch_size must be at least 1, got {self.batch_size}"),
            (self.buffer_size >= self.batch_size,
             f"algo.buffer_size={self.buffer_size} is smaller than algo.batch_size={self.batch_size}; "
             f"the buffer must hold at least one batch"),
            (self.learning_starts >= 0, f"algo.learning_starts must be >= 0, got {self.learning_starts}"),
            (self.rollout_steps >= 1, f"algo.rollout_steps must be at least 1, got {self.rollout_steps}"),
            (self.replay_ratio > 0, f"algo.replay_ratio must be positive, got {self.replay_ratio}"),
            (self.target_update_every >= 1,
             f"algo.target_update_every must be at least 1, got {self.target_update_every}"),
            (0.0 < self.tau <= 1.0, f"algo.tau must lie in (0, 1], got {self.tau}"),
            (self.n_steps >= 1, f"algo.n_steps must be at least 1, got {self.n_steps}"),
            (0.0 <= self.per_alpha <= 1.0, f"algo.per_alpha must lie in [0, 1], got {self.per_alpha}"),
            (0.0 <= self.per_beta_start <= 1.0,
             f"algo.per_beta_start must lie in [0, 1], got {self.per_beta_start}"),
            (self.per_eps > 0, f"algo.per_eps must be positive, got {self.per_eps}"),
            (self.num_atoms >= 2, f"algo.num_atoms must be at least 2, got {self.num_atoms}"),
            (self.v_min < self.v_max,
             f"algo.v_min={self.v_min} must be below algo.v_max={self.v_max}"),
            (self.noisy_sigma >= 0, f"algo.noisy_sigma must be >= 0, got {self.noisy_sigma}"),
            (self.eps_decay_fraction > 0,
             f"algo.eps_decay_fraction must be positive, got {self.eps_decay_fraction}"),
        ]
        for key in ("eps_start", "eps_end", "eval_epsilon"):
            value = getattr(self, key)
            checks.append((0.0 <= value <= 1.0, f"algo.{key} must lie in [0, 1], got {value}"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def hparams(self) -> HParams:
        return HParams(*(jnp.float32(getattr(self, f)) for f in HParams._fields))


class Step(NamedTuple):
    """One env step of every copy, time-major after `collect`'s scan: [T, num_envs, ...]."""

    obs: chex.Array
    action: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    final_obs: chex.Array  # observation the step reached, before auto-reset


class Transition(NamedTuple):
    """What the replay buffer stores: an n-step transition ready for the Q-learning target
    reward + discount * Q(next_obs, .), with discount 0 after a termination."""

    obs: chex.Array
    action: chex.Array
    reward: chex.Array  # n-step discounted return
    discount: chex.Array  # gamma^k, or 0 after a termination
    next_obs: chex.Array


class DQNState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: optax.OptState
    buffer: buffers.ReplayState
    env_state: Any
    obs: chex.Array
    recent: Step | None  # the last n_steps - 1 steps, whose n-step windows are still open
    # (None for 1-step targets: orbax cannot save empty arrays)
    key: chex.PRNGKey
    update_step: chex.Array


def _optimizer(config: Config, hp: HParams, lr: chex.Array) -> optax.GradientTransformation:
    """Global-norm clipping (max_grad_norm 0: off), Adam or AMSGrad, AdamW's decoupled decay."""
    clip = jnp.where(hp.max_grad_norm > 0, hp.max_grad_norm, jnp.inf)
    scale = optax.scale_by_amsgrad if config.amsgrad else optax.scale_by_adam
    parts = [optax.clip_by_global_norm(clip), scale(eps=config.adam_eps)]
    if config.optimizer == "adamw":
        parts.append(optax.add_decayed_weights(hp.weight_decay))
    return optax.chain(*parts, optax.scale(-lr))


def build_network(config: Config, env: Any, env_params: Any) -> QNetwork:
    """The Q-network for this env's observation shape and number of actions."""
    obs_shape = tuple(env.observation_space(env_params).shape)
    try:
        check_torso(config.network, len(obs_shape))
    except ValueError as error:
        raise ConfigError(f"algo.{error}") from None
    return QNetwork(config.network, env.action_space(env_params).n, len(obs_shape),
                    dueling=config.dueling, noisy=config.noisy, sigma0=config.noisy_sigma,
                    num_atoms=config.num_atoms if config.distributional else 1,
                    v_min=config.v_min, v_max=config.v_max)


def _take(values: chex.Array, index: chex.Array) -> chex.Array:
    """values[b, index[b]] along axis 1, keeping any trailing (atom) axis."""
    index = index.astype(jnp.int32).reshape(index.shape + (1,) * (values.ndim - 1))
    return jnp.take_along_axis(values, index, axis=1)[:, 0]


def episode_metrics(info: dict[str, chex.Array]) -> Metrics:
    """Sums over the episodes that ended during the update, as `algos.base` asks."""
    done = info["episode_done"].astype(jnp.float32)
    return {"episodes": done.sum(), "episode_return": (info["episode_return"] * done).sum(),
            "episode_length": (info["episode_length"] * done).sum()}


def make(config: Config, env: Any, env_params: Any, total_env_steps: int,
         grad_sync: GradSync | None = None) -> Algorithm:
    """Binds DQN to a vectorised env (see `jaxrl.envs.make_vec`) for `total_env_steps` per agent;
    `grad_sync` transforms every gradient before the optimiser (data-parallel populations)."""
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Discrete):
        raise ConfigError(
            f"DQN picks among discrete actions, but this env has {describe_space(action_space)}; "
            f"choose a discrete env or a continuous-action algorithm (ppo with a gaussian/beta policy)")
    num_envs, num_actions = env.num_envs, action_space.n
    steps_per_update = num_envs * config.rollout_steps
    gradient_steps = config.replay_ratio * steps_per_update
    if abs(gradient_steps - round(gradient_steps)) > 1e-6 or round(gradient_steps) < 1:
        raise ConfigError(
            f"algo.replay_ratio={config.replay_ratio} x env steps per update ({num_envs} envs x "
            f"{config.rollout_steps} rollout_steps = {steps_per_update}) = {gradient_steps:g} gradient "
            f"steps; it must be a whole number >= 1 (e.g. replay_ratio {1 / steps_per_update:g})")
    gradient_steps = round(gradient_steps)
    if config.buffer_size < steps_per_update:
        raise ConfigError(f"algo.buffer_size={config.buffer_size} cannot hold one update's "
                          f"{steps_per_update} transitions (env.num_envs x algo.rollout_steps)")
    num_updates = total_env_steps // steps_per_update
    if num_updates < 1:
        raise ConfigError(f"total_env_steps={total_env_steps} is less than one update's "
                          f"{steps_per_update} env steps")
    target_every = max(1, math.ceil(config.target_update_every / steps_per_update))
    learn_from = max(config.batch_size, min(config.learning_starts, config.buffer_size))
    n = config.n_steps
    network = build_network(config, env, env_params)
    support = network.support

    def q_output(params, obs, key, noise=True):
        return network.apply(params, obs, noise and config.noisy, rngs={"noise": key})

    # ---- acting -------------------------------------------------------------------------
    def select_action(params, obs, key, epsilon, noise=True):
        """Greedy in Q (under fresh layer noise when noisy), random with probability epsilon."""
        noise_key, explore_key, random_key = jax.random.split(key, 3)
        greedy = jnp.argmax(q_output(params, obs, noise_key, noise).q_values, axis=-1)
        explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
        return jnp.where(explore, jax.random.randint(random_key, greedy.shape, 0, num_actions), greedy)

    def act(params, obs, key, deterministic: bool = False):
        if deterministic:
            return select_action(params, obs, key, 0.0, noise=False)
        return select_action(params, obs, key, 0.0 if config.noisy else config.eval_epsilon)

    def explain(params, obs) -> dict[str, chex.Array]:
        return {"q_values": q_output(params, obs, jax.random.key(0), noise=False).q_values}

    def epsilon_at(state: DQNState, hp: HParams) -> chex.Array:
        if config.noisy:
            return jnp.float32(0.0)
        steps = state.update_step * steps_per_update
        return linear_anneal(hp.eps_start, hp.eps_end, steps, hp.eps_decay_fraction * total_env_steps)

    # ---- state --------------------------------------------------------------------------
    def init(key: chex.PRNGKey, hp: HParams) -> DQNState:
        net_key, noise_key, env_key, key = jax.random.split(key, 4)
        obs, env_state = env.reset(env_key, env_params)
        params = network.init({"params": net_key, "noise": noise_key}, obs)
        opt_state = _optimizer(config, hp, hp.lr).init(params)
        scalar_f = jnp.zeros(num_envs, jnp.float32)
        example = Transition(obs[0], jnp.int32(0), jnp.float32(0), jnp.float32(0), obs[0])
        recent = Step(obs, jnp.zeros(num_envs, jnp.int32), scalar_f, scalar_f > 0, scalar_f > 0, obs)
        recent = jax.tree.map(lambda x: jnp.zeros((n - 1,) + x.shape, x.dtype), recent) if n > 1 else None
        buffer = buffers.init(example, config.buffer_size, prioritized=config.prioritized)
        return DQNState(params, params, opt_state, buffer, env_state, obs, recent, key, jnp.int32(0))

    # ---- collect ------------------------------------------------------------------------
    def collect(state: DQNState, epsilon: chex.Array) -> tuple[DQNState, Step, dict]:
        """Runs `rollout_steps` steps of every env copy, epsilon-greedy (or noisy) in Q."""

        def step(carry, _):
            env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            action = select_action(state.params, obs, act_key, epsilon)
            next_obs, env_state, reward, terminated, truncated, info = env.step(
                step_key, env_state, action, env_params)
            record = Step(obs, action, reward, terminated, truncated, info["final_observation"])
            episodes = {k: info[k] for k in ("episode_done", "episode_return", "episode_length")}
            return (env_state, next_obs, key), (record, episodes)

        (env_state, obs, key), (steps, info) = jax.lax.scan(
            step, (state.env_state, state.obs, state.key), length=config.rollout_steps)
        return state._replace(env_state=env_state, obs=obs, key=key), steps, info

    # ---- store --------------------------------------------------------------------------
    def store(state: DQNState, steps: Step, hp: HParams) -> DQNState:
        """Closes the n-step windows that start in the last n-1 steps or this update, and adds
        them to the buffer; windows that would start before the first step are dropped."""
        seq = steps if n == 1 else jax.tree.map(lambda old, new: jnp.concatenate([old, new]),
                                                state.recent, steps)
        targets = n_step_targets(seq.reward, seq.terminated, seq.truncated, hp.gamma, n)
        start = config.rollout_steps
        next_obs = jnp.take_along_axis(
            seq.final_obs, targets.last.reshape(targets.last.shape + (1,) * (seq.obs.ndim - 2)), axis=0)
        transitions = Transition(seq.obs[:start], seq.action[:start], targets.returns,
                                 targets.discounts, next_obs)
        first_step = state.update_step * config.rollout_steps - (n - 1)  # step index of seq[0]
        valid = jnp.broadcast_to((first_step + jnp.arange(start) >= 0)[:, None], (start, num_envs))
        flat = jax.tree.map(lambda x: x.reshape((start * num_envs,) + x.shape[2:]), transitions)
        buffer = buffers.add(state.buffer, flat, valid.reshape(-1))
        recent = jax.tree.map(lambda x: x[x.shape[0] - (n - 1):], seq) if n > 1 else None
        return state._replace(buffer=buffer, recent=recent)

    # ---- learn --------------------------------------------------------------------------
    def loss_fn(params, target_params, batch: Transition, weights, key):
        """Importance-weighted TD loss; also returns the per-item priorities' source |delta|."""
        online_key, target_key, select_key = jax.random.split(key, 3)
        online = q_output(params, batch.obs, online_key)
        next_target = q_output(target_params, batch.next_obs, target_key)
        selector = q_output(params, batch.next_obs, select_key) if config.double else next_target
        next_action = jnp.argmax(jax.lax.stop_gradient(selector.q_values), axis=-1)
        if config.distributional:
            next_probs = jax.nn.softmax(_take(next_target.logits, next_action))
            target = jax.lax.stop_gradient(
                categorical_projection(next_probs, batch.reward, batch.discount, support))
            log_probs = jax.nn.log_softmax(_take(online.logits, batch.action))
            per_item = -jnp.sum(target * log_probs, axis=-1)
            priority_source = per_item
        else:
            next_q = _take(next_target.q_values, next_action)
            target = jax.lax.stop_gradient(batch.reward + batch.discount * next_q)
            td_error = _take(online.q_values, batch.action) - target
            per_item = huber_loss(td_error) if config.loss == "huber" else jnp.square(td_error)
            priority_source = td_error
        loss = jnp.mean(weights * per_item)
        q_taken = _take(online.q_values, batch.action)
        return loss, (priority_source, {"loss": loss, "q_mean": q_taken.mean()})

    def learn(state: DQNState, hp: HParams) -> tuple[DQNState, Metrics]:
        """`gradient_steps` steps on replayed batches once the buffer holds `learn_from`
        transitions, then the target update on its period; earlier, the state is kept."""
        progress = state.update_step / max(num_updates - 1, 1)
        beta = hp.per_beta_start + (1.0 - hp.per_beta_start) * jnp.minimum(progress, 1.0)
        lr = linear_decay(hp.lr, state.update_step, num_updates) if config.anneal_lr else hp.lr
        optimizer = _optimizer(config, hp, lr)

        def gradient_step(carry, key):
            params, opt_state, buffer = carry
            sample_key, loss_key = jax.random.split(key)
            if config.prioritized:
                sample = buffers.sample_prioritized(buffer, sample_key, config.batch_size, beta)
                batch, indices, weights = sample.data, sample.indices, sample.weights
            else:
                batch, indices, weights = buffers.sample_uniform(buffer, sample_key, config.batch_size)
            grads, (priority_source, metrics) = jax.grad(loss_fn, has_aux=True)(
                params, state.target_params, batch, weights, loss_key)
            if grad_sync is not None:
                grads = grad_sync(grads)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            if config.prioritized:
                buffer = buffers.update_priorities(buffer, indices, priority_source, hp.per_alpha,
                                                   config.per_eps)
            return (optax.apply_updates(params, updates), opt_state, buffer), metrics

        key, step_key = jax.random.split(state.key)
        (params, opt_state, buffer), metrics = jax.lax.scan(
            gradient_step, (state.params, state.opt_state, state.buffer),
            jax.random.split(step_key, gradient_steps))
        learning = state.buffer.size >= learn_from
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(learning, a, b), new, old)
        # learning only changes the buffer's priorities: select those, never the stored data
        params, opt_state, priorities = keep(
            (params, opt_state, (buffer.priorities, buffer.max_priority)),
            (state.params, state.opt_state, (state.buffer.priorities, state.buffer.max_priority)))
        buffer = state.buffer._replace(priorities=priorities[0], max_priority=priorities[1])
        refresh = learning & ((state.update_step + 1) % target_every == 0)
        target_params = jax.tree.map(
            lambda online, target: jnp.where(refresh, hp.tau * online + (1 - hp.tau) * target, target),
            params, state.target_params)
        metrics = {name: jnp.where(learning, value.mean(), jnp.nan) for name, value in metrics.items()}
        if config.prioritized:
            metrics["per_beta"] = beta
        new_state = state._replace(params=params, target_params=target_params, opt_state=opt_state,
                                   buffer=buffer, key=key, update_step=state.update_step + 1)
        return new_state, {**metrics, "lr": lr}

    def store_and_learn(state: DQNState, steps: Step, info: dict, epsilon: chex.Array,
                        hp: HParams) -> tuple[DQNState, Metrics]:
        state = store(state, steps, hp)
        state, metrics = learn(state, hp)
        return state, {**metrics, "epsilon": epsilon, **episode_metrics(info)}

    def update(state: DQNState, hp: HParams) -> tuple[DQNState, Metrics]:
        epsilon = epsilon_at(state, hp)
        state, steps, info = collect(state, epsilon)
        return store_and_learn(state, steps, info, epsilon, hp)

    # ---- the same pieces for envs stepped on the host (jaxrl.host_loop) ----------------
    def host_act(state: DQNState, obs: chex.Array, hp: HParams):
        key, act_key, _ = jax.random.split(state.key, 3)  # as `collect` spends its key
        action = select_action(state.params, obs, act_key, epsilon_at(state, hp))
        return key, action, action

    def host_learn(state: DQNState, steps: HostSteps, hp: HParams) -> tuple[DQNState, Metrics]:
        record = Step(steps.obs, steps.record, steps.reward, steps.terminated, steps.truncated,
                      steps.final_obs)
        return store_and_learn(state, record, steps.info(), epsilon_at(state, hp), hp)

    def cut_open_windows(state: DQNState) -> DQNState:
        """After resets the algorithm did not see, the last stored step ends its episode
        (as a truncation: bootstrap from its own next observation)."""
        if n == 1:
            return state
        return state._replace(recent=state.recent._replace(
            truncated=state.recent.truncated.at[-1].set(True)))

    host = HostHooks(host_act, host_learn, config.rollout_steps, after_env_reset=cut_open_windows)
    return Algorithm("dqn", init, update, act, config.hparams(), steps_per_update, num_updates,
                     explain=explain, replay_field="buffer", host=host,
                     with_grad_sync=lambda sync: make(config, env, env_params, total_env_steps, sync))
