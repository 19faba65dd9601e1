"""Deep Q-learning with every Rainbow part, each one a config flag, as pure functions of one agent.

Parts (Hessel et al., 2018), any subset: `double` (online net picks the next action, target
net values it), `dueling` (V + A - mean A), `prioritized` replay (p = (|delta| + eps)^alpha,
importance weights annealed from beta_start to 1), `n_steps` returns (stopping at episode
ends, bootstrapping at truncations), `distributional` C51 (num_atoms over [v_min, v_max]),
and `noisy` layers (factorised Gaussian, replacing epsilon-greedy). `rainbow: true` turns all
six on. They meet in three places only: the network (`QNetwork`), the buffer calls and the
target computation in `loss_fn`.

Read top to bottom: config -> `Plan` (the run's static step counts) -> state -> acting
(`policy`, one step's epsilon-greedy or noisy decision) -> `store` (n-step transitions into
the replay buffer) -> `td_target` -> `td_loss` -> `learn` (store, gradient steps, target
update) -> `make`, which binds them to an env and a network into an `Algorithm`. `jaxrl.rollout` drives
`policy` and `learn` on jittable envs, `jaxrl.host_loop` on host envs. Any flax module whose
`apply(params, obs, rngs={"noise": key})` returns `QOutput(q_values, logits)` (logits
[..., actions, atoms] for C51) may stand in for the default `QNetwork`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrl import buffers
from jaxrl.algos.base import (
    Algorithm, AlgorithmSpec, GradSync, Metrics, either, learning_rate, updates_in_budget,
)
from jaxrl.envs import describe_space, spaces
from jaxrl.errors import ConfigError
from jaxrl.networks import NetworkConfig, QNetwork, QOutput, check_torso
from jaxrl.rl import categorical_projection, huber_loss, linear_anneal, n_step_targets
from jaxrl.rollout import Steps, episode_metrics, make_update

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
            (self.learning_starts <= self.buffer_size,
             f"algo.learning_starts={self.learning_starts} is above algo.buffer_size={self.buffer_size}: the "
             f"buffer can never hold that many transitions; lower learning_starts or raise buffer_size"),
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
    """One env step of every copy, as n-step windows need it: [T, num_envs, ...]."""

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


class Plan(NamedTuple):
    """The run's static step counts, fixed by the config, the env copies and the budget."""

    num_envs: int
    steps_per_update: int  # env steps of one update: num_envs x rollout_steps
    num_updates: int
    gradient_steps: int  # per update: replay_ratio x steps_per_update
    target_every: int  # updates between target-network updates
    learn_from: int  # transitions in the buffer before learning starts
    total_env_steps: int


def plan(config: Config, num_envs: int, total_env_steps: int) -> Plan:
    """The step counts of a run, or a ConfigError naming the key to change."""
    steps_per_update = num_envs * config.rollout_steps
    gradient_steps = config.replay_ratio * steps_per_update
    if abs(gradient_steps - round(gradient_steps)) > 1e-6 or round(gradient_steps) < 1:
        raise ConfigError(
            f"algo.replay_ratio={config.replay_ratio} x env steps per update ({num_envs} envs x "
            f"{config.rollout_steps} rollout_steps = {steps_per_update}) = {gradient_steps:g} gradient "
            f"steps; it must be a whole number >= 1 (e.g. replay_ratio {1 / steps_per_update:g})")
    if config.buffer_size < steps_per_update:
        raise ConfigError(f"algo.buffer_size={config.buffer_size} cannot hold one update's "
                          f"{steps_per_update} transitions (env.num_envs x algo.rollout_steps)")
    num_updates = updates_in_budget(total_env_steps, steps_per_update,
                                    "shrink env.num_envs/algo.rollout_steps")
    return Plan(num_envs, steps_per_update, num_updates, round(gradient_steps),
                max(1, math.ceil(config.target_update_every / steps_per_update)),
                max(config.batch_size, min(config.learning_starts, config.buffer_size)), total_env_steps)


def optimizer(config: Config, hp: HParams, lr: chex.Array) -> optax.GradientTransformation:
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


def support(config: Config) -> chex.Array:
    """C51's atoms: num_atoms values evenly spaced over [v_min, v_max]."""
    return jnp.linspace(config.v_min, config.v_max, config.num_atoms)


def take(values: chex.Array, index: chex.Array) -> chex.Array:
    """values[b, index[b]] along axis 1, keeping any trailing (atom) axis."""
    index = index.astype(jnp.int32).reshape(index.shape + (1,) * (values.ndim - 1))
    return jnp.take_along_axis(values, index, axis=1)[:, 0]


# ---- acting -------------------------------------------------------------------------------
def q_output(network: nn.Module, config: Config, params: Any, obs: chex.Array, key: chex.PRNGKey,
             noise: bool = True) -> QOutput:
    """The network's Q-values (and C51 logits), under fresh layer noise when noisy."""
    if config.noisy:
        return network.apply(params, obs, noise, rngs={"noise": key})
    return network.apply(params, obs, rngs={"noise": key})


def select_action(network: nn.Module, config: Config, params: Any, obs: chex.Array,
                  key: chex.PRNGKey, epsilon: chex.Array, noise: bool = True) -> chex.Array:
    """Greedy in Q (under fresh layer noise when noisy), random with probability epsilon."""
    noise_key, explore_key, random_key = jax.random.split(key, 3)
    q_values = q_output(network, config, params, obs, noise_key, noise).q_values
    greedy = jnp.argmax(q_values, axis=-1)
    explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
    return jnp.where(explore, jax.random.randint(random_key, greedy.shape, 0, q_values.shape[-1]), greedy)


def exploration(config: Config, run: Plan, update_step: chex.Array, hp: HParams) -> chex.Array:
    """Epsilon: linear from eps_start to eps_end over eps_decay_fraction of the run (0: noisy)."""
    if config.noisy:
        return jnp.float32(0.0)
    steps = update_step * run.steps_per_update
    return linear_anneal(hp.eps_start, hp.eps_end, steps, hp.eps_decay_fraction * run.total_env_steps)


def policy(network: nn.Module, config: Config, run: Plan, state: DQNState, obs: chex.Array,
           key: chex.PRNGKey, hp: HParams) -> tuple[chex.Array, chex.Array]:
    """One step's actions, epsilon-greedy (or noisy) in Q; the record is the action itself."""
    action = select_action(network, config, state.params, obs, key,
                           exploration(config, run, state.update_step, hp))
    return action, action


def act(network: nn.Module, config: Config, params: Any, obs: chex.Array, key: chex.PRNGKey,
        deterministic: bool | chex.Array = False) -> chex.Array:
    """Evaluation actions: greedy without layer noise, or with `eval_epsilon` (noise if noisy)."""
    return either(deterministic,
                  lambda: select_action(network, config, params, obs, key, 0.0, noise=False),
                  lambda: select_action(network, config, params, obs, key,
                                        0.0 if config.noisy else config.eval_epsilon))


def explain(network: nn.Module, config: Config, params: Any, obs: chex.Array) -> dict[str, chex.Array]:
    return {"q_values": q_output(network, config, params, obs, jax.random.key(0), noise=False).q_values}


# ---- replay -------------------------------------------------------------------------------
def store(config: Config, state: DQNState, steps: Step, hp: HParams) -> DQNState:
    """Closes the n-step windows that start in the last n-1 steps or this rollout, and adds
    them to the buffer; windows that would start before the first step are dropped."""
    n, length, num_envs = config.n_steps, steps.reward.shape[0], steps.reward.shape[1]
    seq = steps if n == 1 else jax.tree.map(lambda old, new: jnp.concatenate([old, new]),
                                            state.recent, steps)
    targets = n_step_targets(seq.reward, seq.terminated, seq.truncated, hp.gamma, n)
    next_obs = jnp.take_along_axis(
        seq.final_obs, targets.last.reshape(targets.last.shape + (1,) * (seq.obs.ndim - 2)), axis=0)
    transitions = Transition(seq.obs[:length], seq.action[:length], targets.returns,
                             targets.discounts, next_obs)
    first_step = state.update_step * length - (n - 1)  # step index of seq[0]
    valid = jnp.broadcast_to((first_step + jnp.arange(length) >= 0)[:, None], (length, num_envs))
    flat = jax.tree.map(lambda x: x.reshape((length * num_envs,) + x.shape[2:]), transitions)
    buffer = buffers.add(state.buffer, flat, valid.reshape(-1))
    recent = jax.tree.map(lambda x: x[x.shape[0] - (n - 1):], seq) if n > 1 else None
    return state._replace(buffer=buffer, recent=recent)


def cut_open_windows(config: Config, state: DQNState) -> DQNState:
    """After resets the algorithm did not see, the last stored step ends its episode
    (as a truncation: bootstrap from its own next observation)."""
    if config.n_steps == 1:
        return state
    return state._replace(recent=state.recent._replace(
        truncated=state.recent.truncated.at[-1].set(True)))


def sample(config: Config, buffer: buffers.ReplayState, key: chex.PRNGKey, beta: chex.Array
           ) -> buffers.Sample:
    """A replayed batch, its slots and importance weights (ones when uniform)."""
    if config.prioritized:
        return buffers.sample_prioritized(buffer, key, config.batch_size, beta)
    return buffers.sample_uniform(buffer, key, config.batch_size)


# ---- learning -----------------------------------------------------------------------------
def td_target(network: nn.Module, config: Config, params: Any, target_params: Any, batch: Transition,
              target_key: chex.PRNGKey, select_key: chex.PRNGKey) -> chex.Array:
    """The bootstrapped target of each transition, no gradient: reward + discount x Q_target
    at the next action (chosen by the online network when `double`); C51: that target
    distribution projected onto the support."""
    q = functools.partial(q_output, network, config)
    next_target = q(target_params, batch.next_obs, target_key)
    selector = q(params, batch.next_obs, select_key) if config.double else next_target
    next_action = jnp.argmax(jax.lax.stop_gradient(selector.q_values), axis=-1)
    if config.distributional:
        next_probs = jax.nn.softmax(take(next_target.logits, next_action))
        return jax.lax.stop_gradient(
            categorical_projection(next_probs, batch.reward, batch.discount, support(config)))
    return jax.lax.stop_gradient(batch.reward + batch.discount * take(next_target.q_values, next_action))


def td_loss(network: nn.Module, config: Config, params: Any, target_params: Any, batch: Transition,
            weights: chex.Array, key: chex.PRNGKey) -> tuple[chex.Array, tuple[chex.Array, Metrics]]:
    """Importance-weighted TD loss (C51: cross-entropy to the projected target); also the
    per-item source of new priorities (|delta| or the cross-entropy) and metrics."""
    online_key, target_key, select_key = jax.random.split(key, 3)
    online = q_output(network, config, params, batch.obs, online_key)
    target = td_target(network, config, params, target_params, batch, target_key, select_key)
    if config.distributional:
        per_item = -jnp.sum(target * jax.nn.log_softmax(take(online.logits, batch.action)), axis=-1)
        priority_source = per_item
    else:
        td_error = take(online.q_values, batch.action) - target
        per_item = huber_loss(td_error) if config.loss == "huber" else jnp.square(td_error)
        priority_source = td_error
    loss = jnp.mean(weights * per_item)
    return loss, (priority_source, {"loss": loss, "q_mean": take(online.q_values, batch.action).mean()})


def gradient_steps(network: nn.Module, config: Config, run: Plan, state: DQNState, hp: HParams,
                   lr: chex.Array, beta: chex.Array, key: chex.PRNGKey,
                   grad_sync: GradSync | None = None) -> tuple[tuple[Any, Any, Any], Metrics]:
    """`run.gradient_steps` steps on replayed batches: (params, opt_state, buffer), metrics."""
    tx = optimizer(config, hp, lr)

    def step(carry, key):
        params, opt_state, buffer = carry
        sample_key, loss_key = jax.random.split(key)
        batch, indices, weights = sample(config, buffer, sample_key, beta)
        grads, (priority_source, metrics) = jax.grad(td_loss, argnums=2, has_aux=True)(
            network, config, params, state.target_params, batch, weights, loss_key)
        if grad_sync is not None:
            grads = grad_sync(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        if config.prioritized:
            buffer = buffers.update_priorities(buffer, indices, priority_source, hp.per_alpha,
                                               config.per_eps)
        return (optax.apply_updates(params, updates), opt_state, buffer), metrics

    return jax.lax.scan(step, (state.params, state.opt_state, state.buffer),
                        jax.random.split(key, run.gradient_steps))


def learn(network: nn.Module, config: Config, run: Plan, state: DQNState, steps: Steps, hp: HParams,
          grad_sync: GradSync | None = None) -> tuple[DQNState, Metrics]:
    """Stores the rollout, then (once the buffer holds `learn_from` transitions) takes the
    gradient steps and, on its period, the target update; earlier, the networks are kept."""
    epsilon = exploration(config, run, state.update_step, hp)
    state = store(config, state, Step(steps.obs, steps.record, steps.reward, steps.terminated,
                                      steps.truncated, steps.final_obs), hp)
    progress = state.update_step / max(run.num_updates - 1, 1)
    beta = hp.per_beta_start + (1.0 - hp.per_beta_start) * jnp.minimum(progress, 1.0)
    lr = learning_rate(hp.lr, state.update_step, run.num_updates, config.anneal_lr)
    key, step_key = jax.random.split(state.key)
    (params, opt_state, buffer), metrics = gradient_steps(
        network, config, run, state, hp, lr, beta, step_key, grad_sync)
    learning = state.buffer.size >= run.learn_from
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(learning, a, b), new, old)  # noqa: E731
    # learning only changes the buffer's priorities: select those, never the stored data
    params, opt_state, priorities = keep(
        (params, opt_state, (buffer.priorities, buffer.max_priority)),
        (state.params, state.opt_state, (state.buffer.priorities, state.buffer.max_priority)))
    buffer = state.buffer._replace(priorities=priorities[0], max_priority=priorities[1])
    refresh = learning & ((state.update_step + 1) % run.target_every == 0)
    target_params = jax.tree.map(
        lambda online, target: jnp.where(refresh, hp.tau * online + (1 - hp.tau) * target, target),
        params, state.target_params)
    metrics = {name: jnp.where(learning, value.mean(), jnp.nan) for name, value in metrics.items()}
    if config.prioritized:
        metrics["per_beta"] = beta
    state = state._replace(params=params, target_params=target_params, opt_state=opt_state,
                           buffer=buffer, key=key, update_step=state.update_step + 1)
    return state, {**metrics, "lr": lr, "epsilon": epsilon, **episode_metrics(steps)}


# ---- binding ------------------------------------------------------------------------------
def init(network: nn.Module, config: Config, env: Any, env_params: Any, key: chex.PRNGKey,
         hp: HParams) -> DQNState:
    net_key, noise_key, env_key, key = jax.random.split(key, 4)
    obs, env_state = env.reset(env_key, env_params)
    params = network.init({"params": net_key, "noise": noise_key}, obs)
    opt_state = optimizer(config, hp, hp.lr).init(params)
    num_envs, n = obs.shape[0], config.n_steps
    scalar_f = jnp.zeros(num_envs, jnp.float32)
    example = Transition(obs[0], jnp.int32(0), jnp.float32(0), jnp.float32(0), obs[0])
    recent = Step(obs, jnp.zeros(num_envs, jnp.int32), scalar_f, scalar_f > 0, scalar_f > 0, obs)
    recent = jax.tree.map(lambda x: jnp.zeros((n - 1,) + x.shape, x.dtype), recent) if n > 1 else None
    buffer = buffers.init(example, config.buffer_size, prioritized=config.prioritized)
    return DQNState(params, params, opt_state, buffer, env_state, obs, recent, key, jnp.int32(0))


def make(config: Config, env: Any, env_params: Any, total_env_steps: int, *,
         network: nn.Module | None = None, grad_sync: GradSync | None = None) -> Algorithm:
    """Binds DQN to a vectorised env (see `jaxrl.envs.make_vec`) for `total_env_steps` per agent.

    `network`: any flax module with `QNetwork`'s call (default: `build_network`); `grad_sync`
    transforms every gradient before the optimiser (data-parallel populations)."""
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Discrete):
        raise ConfigError(
            f"DQN picks among discrete actions, but this env has {describe_space(action_space)}; "
            f"choose a discrete env or a continuous-action algorithm (ppo with a gaussian/beta policy)")
    run = plan(config, env.num_envs, total_env_steps)
    network = build_network(config, env, env_params) if network is None else network
    step_policy = functools.partial(policy, network, config, run)
    learn_fn = functools.partial(learn, network, config, run, grad_sync=grad_sync)
    return Algorithm(
        spec=AlgorithmSpec("dqn", run.steps_per_update, run.num_updates, config.rollout_steps,
                           replay_field="buffer"),
        init=functools.partial(init, network, config, env, env_params),
        policy=step_policy, learn=learn_fn,
        update=make_update(step_policy, learn_fn, env, env_params, config.rollout_steps),
        act=functools.partial(act, network, config), default_hparams=config.hparams(),
        explain=functools.partial(explain, network, config),
        after_env_reset=functools.partial(cut_open_windows, config),
        with_grad_sync=lambda sync: make(config, env, env_params, total_env_steps, network=network,
                                         grad_sync=sync))
