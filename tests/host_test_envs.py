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
