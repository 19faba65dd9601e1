"""Small gymnasium envs that misbehave on purpose, for the host worker tests.

Importable by worker processes through gymnasium's `"host_test_envs:<id>"` form (the tests
folder is on `sys.path`, which spawned workers inherit).
"""

import os
import signal
import time

import gymnasium
import numpy as np


class Misbehaving(gymnasium.Env):
    """Counts steps; at step `fail_at` does what `how` says: raise, hang, or die."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, how: str = "raise", fail_at: int = 5):
        self.how, self.fail_at, self.t = how, fail_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == self.fail_at:
            if self.how == "raise":
                raise RuntimeError(f"boom at step {self.t}")
            if self.how == "hang":
                time.sleep(3600)
            if self.how == "die":
                os.kill(os.getpid(), signal.SIGKILL)
        return np.zeros(3, np.float32), 1.0, False, self.t >= 50, {}


class NeedsMissingPackage(gymnasium.Env):
    def __init__(self):
        raise gymnasium.error.DependencyNotInstalled(
            'Box2D is not installed, you can install it by run `pip install swig` followed by '
            '`pip install "gymnasium[box2d]"`')


gymnasium.register("Raising-v0", entry_point=Misbehaving, kwargs={"how": "raise"})
gymnasium.register("Hanging-v0", entry_point=Misbehaving, kwargs={"how": "hang"})
gymnasium.register("Dying-v0", entry_point=Misbehaving, kwargs={"how": "die"})
gymnasium.register("NeedsBox2D-v0", entry_point=NeedsMissingPackage)


class Counting(gymnasium.Env):
    """A transparent env for checking where every step lands: obs = [id, t, 0] with an id
    drawn from the reset seed, reward = 10 (t + 1) + action, the episode ends after
    3 + id % 5 steps. Observations never depend on the actions."""

    observation_space = gymnasium.spaces.Box(0.0, 1e6, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.id, self.t = int(self.np_random.integers(0, 1000)), 0
        return np.array([self.id, 0, 0], np.float32), {}

    def step(self, action):
        reward = 10.0 * (self.t + 1) + int(action)
        self.t += 1
        return np.array([self.id, self.t, 0], np.float32), reward, self.t >= 3 + self.id % 5, False, {}


gymnasium.register("Counting-v0", entry_point=Counting)
