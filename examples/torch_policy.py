"""Play a jaxrl-trained policy with plain PyTorch in a gymnasium env.

    jaxrl train configs/ppo_cartpole.yaml --run-dir runs/cartpole
    python examples/torch_policy.py runs/cartpole --seed-index 0 --episodes 5

`export` (needs jaxrl and torch, as `jaxrl export RUN_DIR --seed-index i` does) writes one
member of the run's newest checkpoint as TorchScript. `play` needs only torch and gymnasium:
it loads that file and acts greedily, as a PyTorch evaluation or video script would. The
exported network takes raw env observations; the run's observation normalisation is built in.
"""

import argparse
import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

warnings.filterwarnings("ignore", ".*torch.jit.*", DeprecationWarning)  # TorchScript still works


def export(run_dir: Path, seed_index: int) -> Path:
    """jaxrl's part: member `seed_index` of the run, saved as RUN_DIR/export/seed<i>.pt."""
    from absl import logging  # orbax notes read-only restores at WARNING level

    from jaxrl.interop import export_run, save

    logging.set_verbosity(logging.ERROR)
    return save(export_run(run_dir, seed_index), run_dir / "export" / f"seed{seed_index}.pt")


def play(policy_file: Path, env_id: str | None, episodes: int, seed: int = 0) -> list[float]:
    """torch's part: `episodes` greedy episodes of the saved policy; returns their returns.
    The env defaults to the run's `env.id` (gymnax classic-control ids match gymnasium's)."""
    policy = torch.jit.load(str(policy_file))
    env = gym.make(env_id or json.loads(policy.metadata)["env_id"])
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = policy.act(torch.as_tensor(np.asarray(obs))[None])[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action.item() if action.ndim == 0 else action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder written by `jaxrl train`")
    parser.add_argument("--seed-index", type=int, default=0, help="the member to play (default 0)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--env", help="gymnasium env id (default: the run's env.id)")
    args = parser.parse_args()
    policy_file = export(args.run_dir, args.seed_index)
    print(f"exported seed {args.seed_index} to {policy_file}")
    returns = play(policy_file, args.env, args.episodes)
    for episode, value in enumerate(returns):
        print(f"episode {episode}: return {value:.1f}")
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.1f}")


if __name__ == "__main__":
    main()
