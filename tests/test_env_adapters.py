"""Own envs: make_vec's protocol check (one readable error per missing piece), the adapters
for plain reset/step functions and brax-style envs (auto-reset, time limit), and a short PPO
run through an adapted env. Tiny envs, a few steps; no brax needed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl import envs, population
from jaxrl.algos import ppo
from jaxrl.envs import spaces
from jaxrl.errors import ConfigError

pytestmark = pytest.mark.timeout(300)

KEY = jax.random.PRNGKey(0)


# --------------------------------------------------------------------------- the protocol check


class ToyEnv:
    """A hand-written protocol env (no gymnax base class); `faults` replace or drop step outputs."""

    def __init__(self, obs_space=None, drop=(), **faults):
        self.obs_space = obs_space or spaces.Box(-1.0, 1.0, (2,), jnp.float32)
        self.drop, self.faults = drop, faults

    default_params = envs.EnvParams(max_steps_in_episode=10)

    def observation_space(self, params):
        return self.obs_space

    def action_space(self, params):
        return spaces.Discrete(2)

    def reset(self, key, params):
        return jnp.zeros(2), jnp.int32(0)

    def step(self, key, state, action, params):
        obs = jnp.ones(2)
        out = {"obs": obs, "state": state + 1, "reward": jnp.float32(1.0), "terminated": state >= 3,
               "truncated": jnp.bool_(False), "info": {"final_observation": obs}}
        out = {**out, **self.faults}
        return tuple(value for name, value in out.items() if name not in self.drop)


class NoTime(envs.Environment):
    """A gymnax env whose state has no `time`, which gymnax's own step reads."""

    @property
    def default_params(self):
        return envs.EnvParams(max_steps_in_episode=10)

    def reset_env(self, key, params):
        return jnp.zeros(1), {"position": jnp.float32(0.0)}

    def step_env(self, key, state, action, params):
        return jnp.zeros(1), state, jnp.float32(0.0), jnp.bool_(False), {}

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def action_space(self, params):
        return spaces.Discrete(2)


class NoStep(ToyEnv):
    step = None


class NoDefaults(ToyEnv):
    @property
    def default_params(self):
        raise AttributeError("default_params")


class Untraceable(ToyEnv):
    def step(self, key, state, action, params):
        if state > 3:  # a Python branch on a traced value
            return ()


@pytest.mark.parametrize("env, words", [
    (NoStep(), "has no step(key, state, action, params)"),
    (ToyEnv(obs_space=object()), "observation_space(params) returned a builtins.object; return a gymnax space"),
    (ToyEnv(obs_space=spaces.Box(-1.0, 1.0, (3,))), "observation has shape (2,) but observation_space(params)"),
    (ToyEnv(drop=("truncated",)), "must return 6 values (obs, state, reward, terminated, truncated, info)"),
    (ToyEnv(obs=jnp.ones(3)), "step's observation is float32[3] but reset's is float32[2]"),
    (ToyEnv(state=jnp.float32(1.0)), "returns state as float32[] but reset returns int32[]"),
    (ToyEnv(reward=jnp.ones(1)), "reward is float32[1]; return one scalar per env"),
    (ToyEnv(terminated=jnp.float32(0.0)), "terminated is float32[]; return a bool scalar"),
    (ToyEnv(info={}), "info has no 'final_observation'; add the observation the episode ended on"),
    (ToyEnv(info={"final_observation": jnp.ones(3)}), "info['final_observation'] is float32[3]"),
    (Untraceable(), "step(key, state, action, params) fails to trace: TracerBoolConversionError"),
    (NoTime(), "state dict has no `time` field, which gymnax's Environment.step reads"),
    (NoDefaults(), "has no default_params; pass env_params= to make_vec"),
])
def test_each_missing_piece_is_one_line_naming_it(env, words):
    with pytest.raises(ConfigError) as error:
        envs.make_vec(env, 2)
    message = str(error.value)
    assert "\n" not in message and words in message, message


def test_a_complete_env_passes_and_a_one_step_time_limit_warns():
    vec, params = envs.make_vec(ToyEnv(), 2)
    assert vec.reset(KEY, params)[0].shape == (2, 2)
    with pytest.warns(UserWarning, match="time limit is 1 step"):
        envs.make_vec(ToyEnv(), 2, env_params=envs.EnvParams(max_steps_in_episode=1))
    env, params = envs.from_functions(*counter_functions(), max_steps=1)
    with pytest.warns(UserWarning, match="FunctionEnv's time limit is 1 step"):
        envs.make_vec(env, 2, env_params=params)


# --------------------------------------------------------------------------- plain functions


def counter_functions(done_at=3, extra=()):
    """A counter: obs [count], reward = action, done once count reaches `done_at`."""

    def reset(key):
        return jnp.zeros(1), jnp.float32(0.0)

    def step(key, count, action):
        count = count + 1
        return (count[None], count, action.astype(jnp.float32), count >= done_at, *extra)

    return reset, step, spaces.Box(0.0, 10.0, (1,), jnp.float32), spaces.Discrete(2)


def play(env, params, steps, action=1):
    """Flags, rewards and final observations of `steps` steps of one copy."""
    obs, state = env.reset(KEY, params)
    rows = []
    for i in range(steps):
        obs, state, reward, terminated, truncated, info = env.step(
            jax.random.PRNGKey(i), state, jnp.int32(action), params)
        rows.append((bool(terminated), bool(truncated), float(reward), float(info["final_observation"][0]),
                     float(obs[0])))
    return rows


def test_functions_get_auto_reset_and_a_time_limit():
    env, params = envs.from_functions(*counter_functions(done_at=3), max_steps=2)
    assert params.max_steps_in_episode == 2 and env.name == "FunctionEnv"
    # truncated after 2 steps (before the counter's own end at 3); the next obs is a reset
    assert play(env, params, 3) == [(False, False, 1.0, 1.0, 1.0), (False, True, 1.0, 2.0, 0.0),
                                    (False, False, 1.0, 1.0, 1.0)]
    # terminating on the step the limit hits is a termination only
    assert play(env, params.replace(max_steps_in_episode=3), 3)[-1][:2] == (True, False)
    # a step's own truncated flag (5th value) and an info dict (last value) pass through
    env, params = envs.from_functions(*counter_functions(done_at=9, extra=(jnp.bool_(True), {"x": 1})))
    obs, state = env.reset(KEY, params)
    _, _, _, terminated, truncated, info = env.step(KEY, state, jnp.int32(0), params)
    assert (bool(terminated), bool(truncated), int(info["x"])) == (False, True, 1)


def test_adapter_refuses_what_cannot_work():
    reset, step, obs_space, act_space = counter_functions()
    with pytest.raises(ConfigError, match="max_steps .* must be a positive integer, got 0"):
        envs.from_functions(reset, step, obs_space, act_space, max_steps=0)
    with pytest.raises(ConfigError, match="action_space returned a builtins.str; return a gymnax space"):
        envs.from_functions(reset, step, obs_space, "Discrete(2)")
    env, _ = envs.from_functions(reset, lambda key, s, a: (s, s, 0.0), obs_space, act_space)
    with pytest.raises(ConfigError, match=r"step\(key, state, action\) must return \(obs, state, reward, done\)"):
        envs.make_vec(env, 2)


def test_ppo_trains_on_plain_functions():
    """A contextual bandit: observe +-1, get 1 for the action that matches its sign."""

    def reset(key):
        sign = jax.random.choice(key, jnp.array([-1.0, 1.0]))
        return sign[None], sign

    def step(key, sign, action):
        reward = jnp.where((action == 1) == (sign > 0), 1.0, 0.0)
        next_sign = jax.random.choice(key, jnp.array([-1.0, 1.0]))
        return next_sign[None], next_sign, reward, jnp.bool_(False)

    env, params = envs.from_functions(reset, step, spaces.Box(-1.0, 1.0, (1,), jnp.float32),
                                      spaces.Discrete(2), max_steps=8, name="SignBandit")
    vec, params = envs.make_vec(env, 4, env_params=params)
    algo = ppo.make(ppo.Config(num_steps=16, num_minibatches=2), vec, params, 4 * 16 * 4)
    result = population.run(algo, 2, updates_per_chunk=4)
    metrics = result.reports[-1].metrics
    assert np.all(np.isfinite(metrics["value_loss"])) and np.all(np.isfinite(metrics["policy_loss"]))
    np.testing.assert_allclose(metrics["episode_length"], 8.0)  # every episode cut by the limit


# --------------------------------------------------------------------------- brax-style envs


@struct.dataclass
class SlideState:
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict


class Slide:
    """Brax-style: a point at x in [-0.1, 0.1] moves by its action each step; |x| > 2.5 ends it."""

    action_size = 1

    def reset(self, rng):
        x = jax.random.uniform(rng, (1,), minval=-0.1, maxval=0.1)
        return SlideState(x, jnp.float32(0.0), jnp.float32(0.0), {})

    def step(self, state, action):
        x = state.obs + action
        return SlideState(x, jnp.float32(1.0), (jnp.abs(x[0]) > 2.5).astype(jnp.float32), state.info)


def test_brax_style_env_gets_spaces_clipping_repeats_and_resets():
    env, params = envs.from_brax(Slide(), max_steps=5, action_repeat=2)
    assert env.name == "Slide" and params.max_steps_in_episode == 5
    assert env.action_space(params).shape == env.observation_space(params).shape == (1,)
    _, state = env.reset(KEY, params)
    start = float(state.inner.obs[0])
    obs, state, reward, terminated, truncated, info = env.step(KEY, state, jnp.array([50.0]), params)
    assert float(obs[0]) == pytest.approx(start + 2.0) and float(reward) == 2.0  # clipped to 1, twice
    # the second agent step falls on its first sub-step: the second sub-step is masked out
    obs, state, reward, terminated, truncated, info = env.step(KEY, state, jnp.array([1.0]), params)
    assert (bool(terminated), bool(truncated), float(reward)) == (True, False, 1.0)
    assert float(info["final_observation"][0]) == pytest.approx(start + 3.0)
    assert abs(float(obs[0])) <= 0.1 and int(state.time) == 0  # a fresh reset


def test_brax_style_env_trains_its_time_limit_through_make_vec():
    env, params = envs.from_brax(Slide(), max_steps=3)
    vec, params = envs.make_vec(env, 2, env_params=params)
    obs, state = vec.reset(KEY, params)
    step = jax.jit(vec.step)
    for i in range(3):
        obs, state, reward, terminated, truncated, info = step(jax.random.PRNGKey(i), state, jnp.zeros((2, 1)), params)
    assert truncated.tolist() == [True, True] and info["episode_return"].tolist() == [3.0, 3.0]


def test_brax_style_env_without_action_size_is_refused():
    class NoSize(Slide):
        action_size = None

    with pytest.raises(ConfigError, match="needs action_size"):
        envs.from_brax(NoSize())
