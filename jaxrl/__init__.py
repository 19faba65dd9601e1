"""jaxrl: populations of reinforcement-learning agents trained in one compiled JAX program.

Importing `jaxrl` imports no JAX, so `jaxrl.runtime.cpu_defaults` can still choose the CPU
device count; import the rooms you need: `jaxrl.envs`, `jaxrl.rl`, `jaxrl.networks`,
`jaxrl.algos`, `jaxrl.population`, `jaxrl.evaluation`, `jaxrl.experiment`, `jaxrl.analysis`.
"""

__version__ = "0.1.0"
