"""A PPO variant in one's own code: a KL-penalised objective and a residual torso of one's own.

    python examples/custom_ppo.py --seeds 8 --steps 100000

Only public jaxrl pieces: the env, PPO's config and `make`, the actor-critic heads around two
user torsos (one for the policy, one for the value: a torso shared by both learns CartPole far
worse here), GAE and minibatching (inside `ppo.learn`), the population driver and evaluator.
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import population
from jaxrl.algos import ppo
from jaxrl.envs import make_vec
from jaxrl.evaluation import make_evaluator
from jaxrl.networks import ActorCritic, NetworkConfig, orthogonal, policy_spec
from jaxrl.rl import approx_kl, value_loss


class ResidualTorso(nn.Module):
    """Observations -> features: a dense layer, then pre-norm residual blocks."""

    width: int = 64
    blocks: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = nn.Dense(self.width, kernel_init=orthogonal(2**0.5))(obs)
        for _ in range(self.blocks):  # `orthogonal` is safe under the population's vmap
            x = x + nn.Dense(self.width, kernel_init=orthogonal(1.0))(jnp.tanh(nn.LayerNorm()(x)))
        return jnp.tanh(x)


def kl_penalty_loss(network, params, minibatch: ppo.Minibatch, hp: ppo.HParams, kl_coef: float = 3.0):
    """PPO-penalty (Schulman et al., 2017, sec. 4): the unclipped ratio objective minus
    kl_coef x KL(old || new), in place of the clipped surrogate."""
    dist, values = network.apply(params, minibatch.obs)
    log_prob = dist.log_prob(minibatch.action)
    advantage = (minibatch.advantage - minibatch.advantage.mean()) / (minibatch.advantage.std() + 1e-8)
    kl = approx_kl(log_prob, minibatch.log_prob)
    policy_loss = -jnp.mean(jnp.exp(log_prob - minibatch.log_prob) * advantage) + kl_coef * kl
    v_loss = value_loss(values, minibatch.target)
    entropy = dist.entropy().mean()
    total = policy_loss + hp.vf_coef * v_loss - hp.ent_coef * entropy
    return total, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy, "approx_kl": kl}


def main(seeds: int, steps: int) -> np.ndarray:
    env, env_params = make_vec("CartPole-v1", 8)
    eval_env, _ = make_vec("CartPole-v1", 4, update_stats=False)
    spec = policy_spec(env.action_space(env_params))  # a categorical head for CartPole's 2 actions
    network = ActorCritic(NetworkConfig(), spec, encoder=ResidualTorso(), critic_encoder=ResidualTorso())
    config = ppo.Config(num_steps=64, lr=1e-3)
    algo = ppo.make(config, env, env_params, steps, network=network, loss=kl_penalty_loss)
    evaluator = make_evaluator(algo, eval_env, env_params, max_steps=500)
    result = population.run(algo, seeds, seed=0, updates_per_chunk=8, evaluator=evaluator)
    returns = result.final_eval_returns.mean(axis=1)
    print(f"{seeds} seeds x {steps} steps: greedy return per seed {[round(float(x), 1) for x in returns]}, "
          f"{result.steady_sps:,.0f} env steps/s")
    return returns


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    main(args.seeds, args.steps)
