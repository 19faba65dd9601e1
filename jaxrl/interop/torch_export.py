"""Export a trained jaxrl network to a `torch.nn.Module` that computes the same outputs.

`to_torch(network, params)` mirrors a flax `ActorCritic`, `Actor` or `QNetwork` and copies one
member's weights into it; `export_run` does that for one seed of a run folder, observation
normalisation included; `save` writes TorchScript, which `torch.jit.load` reads without jaxrl.

The torch modules take observations exactly as the env gives them (batched, [B, *obs_shape];
images [B, H, W, C] as in jaxrl) and return a dict of tensors:

* Q-networks: `q_values` [B, A] and `logits` [B, A, atoms] (atoms = 1 without C51);
* policies: `logits` (categorical), `mean` and `log_std` (gaussian, tanh_gaussian) or `alpha`
  and `beta` (beta), plus `value` for an actor-critic.

`act(obs, deterministic=True)` returns the env action as jaxrl's deterministic `act` does. With
`deterministic=False` a policy samples its distribution and a Q-network is epsilon-greedy with
its `epsilon` attribute (noisy layers always act with their mean weights).
"""

import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from jaxrl.errors import ConfigError, RunDirError
from jaxrl.networks import Actor, ActorCritic, QNetwork, make_torso
from jaxrl.networks.distributions import Beta
from jaxrl.networks.modules import CONV_LAYERS, NetworkConfig
from jaxrl.networks.policy import LOG_STD_RANGE, PolicySpec, head_size

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # the optional extra is not installed
    raise ConfigError('exporting to PyTorch needs torch: pip install "jaxrl[torch]"') from None

# (kernel, stride) of each VALID convolution in `NatureCNN` and `MinAtarCNN` (see modules.py).
class ObsStats(NamedTuple):
    """A run's observation normalisation: clip((obs - mean) / sqrt(var + eps), -clip, clip)."""

    mean: Any
    var: Any
    clip: float = 10.0
    eps: float = 1e-8


# ---- torch modules (TorchScript-compatible) -------------------------------------------------


def _activation(name: str) -> nn.Module:
    """The torch twin of `modules.ACTIVATIONS[name]` (flax's gelu is the tanh approximation)."""
    return {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU,
            "gelu": lambda: nn.GELU(approximate="tanh")}[name]()


class ObsNormalizer(nn.Module):
    """jaxrl's `NormalizeObservation` with one member's frozen statistics."""

    def __init__(self, stats: ObsStats):
        super().__init__()
        self.register_buffer("mean", _tensor(stats.mean))
        self.register_buffer("var", _tensor(stats.var))
        self.clip, self.eps = float(stats.clip), float(stats.eps)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = (obs.to(torch.float32) - self.mean) / torch.sqrt(self.var + self.eps)
        return torch.clamp(x, -self.clip, self.clip)


class MLPTorso(nn.Module):
    """jaxrl's `MLP`: flatten the last `obs_ndim` axes, then dense layers with activations."""

    def __init__(self, layers: Sequence[nn.Linear], activation: str, obs_ndim: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.act = _activation(activation)
        self.obs_ndim = obs_ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        x = x.unsqueeze(-1) if self.obs_ndim == 0 else x.flatten(x.dim() - self.obs_ndim)
        for layer in self.layers:
            x = self.act(layer(x))
        return x


class ConvTorso(nn.Module):
    """jaxrl's `_conv_stack` then `MLP`: the patch + dense convolutions are Conv2d without
    padding; inputs are [.., H, W, C] and features are flattened in (H, W, C) order."""

    def __init__(self, convs: Sequence[nn.Conv2d], activation: str, scale_uint8: bool,
                 mlp: MLPTorso):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.act = _activation(activation)
        self.scale_uint8 = scale_uint8  # NatureCNN reads uint8 frames as x / 255
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_uint8 and x.dtype == torch.uint8:
            x = x.to(torch.float32) / 255.0
        else:
            x = x.to(torch.float32)
        lead = x.shape[:-3]
        x = x.reshape([-1] + x.shape[-3:]).permute(0, 3, 1, 2)
        for conv in self.convs:
            x = self.act(conv(x))
        return self.mlp(x.permute(0, 2, 3, 1).reshape(lead + [-1]))


class QHead(nn.Module):
    """`QNetwork`'s head: advantage (and value, when dueling) layers, C51 over `support`."""

    def __init__(self, advantage: nn.Linear, value: Optional[nn.Linear], num_actions: int,
                 support: Any):
        super().__init__()
        self.advantage = advantage
        self.value = value
        self.num_actions = num_actions
        self.register_buffer("support", _tensor(support))
        self.num_atoms = int(self.support.shape[0])

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        lead = features.shape[:-1]
        logits = self.advantage(features).reshape(lead + [self.num_actions, self.num_atoms])
        if self.value is not None:  # dueling: V + A - mean_a A
            value = self.value(features).reshape(lead + [1, self.num_atoms])
            logits = value + logits - logits.mean(dim=-2, keepdim=True)
        if self.num_atoms == 1:
            q_values = logits[..., 0]
        else:
            q_values = torch.sum(torch.softmax(logits, dim=-1) * self.support, dim=-1)
        return {"q_values": q_values, "logits": logits}


class PolicyHead(nn.Module):
    """The policy layer and `policy.distribution`: features -> distribution parameters, and
    parameters -> env action (`dist.to_env(dist.mode())`, or a sample)."""

    def __init__(self, layer: nn.Linear, spec: PolicySpec, log_std: Any):
        super().__init__()
        self.layer = layer
        self.kind, self.size = spec.kind, spec.size
        self.state_log_std = spec.log_std == "state"
        self.init_log_std = float(spec.init_log_std)
        self.log_std_min, self.log_std_max = (float(v) for v in LOG_STD_RANGE)
        self.beta_eps = float(Beta.EPS)
        self.register_buffer("low", _tensor(spec.low))
        self.register_buffer("high", _tensor(spec.high))
        # the free log-std (zeros, unused, for heads that have none)
        self.register_buffer("log_std", _tensor(np.zeros(spec.size) if log_std is None else log_std))

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.layer(features)
        if self.kind == "categorical":
            return {"logits": out}
        if self.kind == "beta":
            both = F.softplus(out) + 1.0
            return {"alpha": both[..., : self.size], "beta": both[..., self.size:]}
        if self.state_log_std:
            log_std = torch.clamp(out[..., self.size:] + self.init_log_std,
                                  self.log_std_min, self.log_std_max)
            return {"mean": out[..., : self.size], "log_std": log_std}
        return {"mean": out, "log_std": self.log_std.expand_as(out)}

    def action(self, dist: Dict[str, torch.Tensor], deterministic: bool) -> torch.Tensor:
        if self.kind == "categorical":
            logits = dist["logits"]
            if not deterministic:  # Gumbel-max sampling
                logits = logits - torch.log(torch.empty_like(logits).exponential_())
            return torch.argmax(logits, dim=-1)
        if self.kind == "beta":
            alpha, beta = dist["alpha"], dist["beta"]
            if deterministic:
                x = alpha / (alpha + beta)
            else:
                a, b = torch._standard_gamma(alpha), torch._standard_gamma(beta)
                x = torch.clamp(a / (a + b), self.beta_eps, 1.0 - self.beta_eps)
            return self.low + x * (self.high - self.low)
        raw = dist["mean"]
        if not deterministic:
            raw = raw + torch.exp(dist["log_std"]) * torch.randn_like(raw)
        if self.kind == "gaussian":
            return torch.clamp(raw, min=self.low, max=self.high)
        return self.low + (torch.tanh(raw) + 1.0) * (self.high - self.low) / 2.0


class TorchPolicy(nn.Module):
    """An `Actor` (no value head) or `ActorCritic` (shared torso when `critic_torso` is None)."""

    def __init__(self, normalize: nn.Module, actor_torso: nn.Module, head: PolicyHead,
                 critic_torso: Optional[nn.Module] = None, value_head: Optional[nn.Linear] = None):
        super().__init__()
        self.normalize = normalize
        self.actor_torso = actor_torso
        self.head = head
        self.critic_torso = critic_torso
        self.value_head = value_head
        self.metadata = "{}"  # JSON about where the weights came from (see `export_run`)

    def forward(self, obs: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.normalize(obs)
        features = self.actor_torso(x)
        out = self.head(features)
        if self.value_head is not None:
            critic = features if self.critic_torso is None else self.critic_torso(x)
            out["value"] = self.value_head(critic)[..., 0]
        return out

    @torch.jit.export
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.head.action(self.head(self.actor_torso(self.normalize(obs))), deterministic)


class TorchQNetwork(nn.Module):
    """A `QNetwork` (noise-free); acts greedily, or epsilon-greedily when not deterministic."""

    def __init__(self, normalize: nn.Module, torso: nn.Module, head: QHead, epsilon: float = 0.0):
        super().__init__()
        self.normalize = normalize
        self.torso = torso
        self.head = head
        self.epsilon = float(epsilon)
        self.metadata = "{}"

    def forward(self, obs: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.head(self.torso(self.normalize(obs)))

    @torch.jit.export
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        greedy = torch.argmax(self.forward(obs)["q_values"], dim=-1)
        if deterministic or self.epsilon == 0.0:
            return greedy
        explore = torch.rand(greedy.shape) < self.epsilon
        return torch.where(explore, torch.randint_like(greedy, 0, self.head.num_actions), greedy)


# ---- flax params -> torch modules -----------------------------------------------------------


def _tensor(values: Any) -> torch.Tensor:
    """A float32 torch copy of an array (jax or numpy)."""
    return torch.from_numpy(np.array(values, dtype=np.float32))


def _kernel(kernel: Any) -> np.ndarray:
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise ConfigError(f"expected one member's params (dense kernels [in, out]), got a kernel "
                          f"of shape {kernel.shape}; take one seed, e.g. params[i] of each leaf")
    return kernel


def _linear(p: Mapping[str, Any]) -> nn.Linear:
    """A Linear holding a flax Dense (kernel [in, out] -> weight [out, in]); for a NoisyDense,
    its noise-free mean weights, which greedy evaluation uses."""
    kernel, bias = (p["kernel"], p["bias"]) if "kernel" in p else (p["mu_kernel"], p["mu_bias"])
    kernel = _kernel(kernel)
    layer = nn.Linear(*kernel.shape)
    with torch.no_grad():
        layer.weight.copy_(_tensor(kernel.T))
        layer.bias.copy_(_tensor(bias))
    return layer


def _conv(p: Mapping[str, Any], size: int, stride: int) -> nn.Conv2d:
    """A Conv2d from one patch + dense layer: patch features are ordered (C_in, kh, kw)."""
    kernel = _kernel(p["kernel"])
    rows, features = kernel.shape
    channels = rows // (size * size)
    conv = nn.Conv2d(channels, features, size, stride)
    with torch.no_grad():
        conv.weight.copy_(_tensor(kernel.T.reshape(features, channels, size, size)))
        conv.bias.copy_(_tensor(p["bias"]))
    return conv


def _mlp(p: Mapping[str, Any], config: NetworkConfig, obs_ndim: int) -> MLPTorso:
    layers = [_linear(p[f"Dense_{i}"]) for i in range(len(config.hidden_sizes))]
    return MLPTorso(layers, config.activation, obs_ndim)


def _torso(p: Mapping[str, Any], config: NetworkConfig, obs_ndim: int) -> nn.Module:
    """The torch twin of `make_torso(config, obs_ndim)` holding the torso params `p`."""
    if config.torso == "mlp":
        return _mlp(p, config, obs_ndim)
    convs = [_conv(p[f"Dense_{i}"], size, stride)
             for i, (_, size, stride) in enumerate(CONV_LAYERS[config.torso])]
    return ConvTorso(convs, config.activation, config.torso == "nature_cnn",
                     _mlp(p["MLP_0"], config, 1))


def _normalizer(obs_stats: ObsStats | None) -> nn.Module:
    return nn.Identity() if obs_stats is None else ObsNormalizer(obs_stats)


def _q_network(network: QNetwork, p: Mapping[str, Any], obs_stats: ObsStats | None,
               epsilon: float) -> TorchQNetwork:
    torso_name = type(make_torso(network.config, network.obs_ndim)).__name__ + "_0"
    head = QHead(_linear(p["advantage"]), _linear(p["value"]) if network.dueling else None,
                 network.num_actions, np.asarray(network.support))
    return TorchQNetwork(_normalizer(obs_stats), _torso(p[torso_name], network.config,
                                                        network.obs_ndim), head, epsilon)


def _policy(network: Actor | ActorCritic, p: Mapping[str, Any],
            obs_stats: ObsStats | None) -> TorchPolicy:
    config, obs_ndim = network.config, network.obs_ndim
    layer = _linear(p["policy_head"])
    if layer.out_features != head_size(network.spec):
        raise ConfigError(f"the policy layer has {layer.out_features} outputs, but a "
                          f"{network.spec.kind} head of size {network.spec.size} needs "
                          f"{head_size(network.spec)}; params and network do not match")
    head = PolicyHead(layer, network.spec, p.get("log_std"))
    if isinstance(network, Actor):
        return TorchPolicy(_normalizer(obs_stats), _torso(p["torso"], config, obs_ndim), head)
    critic = None if config.shared else _torso(p["critic_torso"], config, obs_ndim)
    return TorchPolicy(_normalizer(obs_stats), _torso(p["actor_torso"], config, obs_ndim), head,
                       critic, _linear(p["value_head"]))


def to_torch(network: Any, params: Any, *, obs_stats: ObsStats | None = None,
             epsilon: float = 0.0) -> nn.Module:
    """A torch module computing what the flax `network` computes with `params` (one member's:
    no population axis), in eval mode without gradients. `obs_stats` prepends a run's
    observation normalisation; `epsilon` is a Q-network's exploration for `act(obs, False)`."""
    p = params["params"] if "params" in params else params
    if isinstance(network, QNetwork):
        module = _q_network(network, p, obs_stats, epsilon)
    elif isinstance(network, (Actor, ActorCritic)):
        module = _policy(network, p, obs_stats)
    else:
        raise ConfigError(f"to_torch exports ActorCritic, Actor and QNetwork modules, "
                          f"not {type(network).__name__}")
    return module.eval().requires_grad_(False)


# ---- run folders and files -------------------------------------------------------------------


def build_network(config: Any, env: Any, env_params: Any) -> Any:
    """The flax network that `config`'s algorithm trains on `env`, as each algorithm builds it."""
    from jaxrl.algos import REGISTRY

    algo = config.algo
    if algo.name in REGISTRY:
        return REGISTRY[algo.name].build_network(algo, env, env_params)
    raise ConfigError(f"no PyTorch export for algo {algo.name!r} (dqn, ppo and grpo have one)")


def obs_stats_of(env: Any, env_state: Any) -> ObsStats | None:
    """One member's observation normalisation, read from its env state, or None without one."""
    from jaxrl.envs.wrappers import NormalizeObservation, NormalizeObsState

    while env is not None and not isinstance(env, NormalizeObservation):
        env = vars(env).get("env")
    while env is not None and env_state is not None and not isinstance(env_state, NormalizeObsState):
        env_state = getattr(env_state, "inner", None)
    if env is None or env_state is None:
        return None
    stats = env_state.stats
    return ObsStats(np.asarray(stats.mean), np.asarray(stats.var), env.clip, env.eps)


def _spaces_env(config: Any, built: Any) -> tuple[Any, Any]:
    """An env with the run's observation and action spaces: the jittable env with the run's
    wrappers, or the stand-in of an env stepped on the host (gymnasium, EnvPool)."""
    from jaxrl.experiment.assemble import host_stand_in, make_env

    host = getattr(built, "host", None)
    if host is None:
        return make_env(config, 1, update_stats=False)
    return host_stand_in(config, host, 1)


def export_run(run_dir: str | Path, seed_index: int = 0) -> nn.Module:
    """Member `seed_index` of a run folder's newest checkpoint as a torch module, with the
    run's observation normalisation built in (it takes raw env observations)."""
    import jax

    from jaxrl.experiment.evaluate import load_run

    run_dir = Path(run_dir)
    config, built, pop, restored = load_run(run_dir, seed_index=seed_index)
    pop.close()  # nothing runs on it; a host-env population may hold workers
    member = lambda tree: jax.tree.map(lambda x: np.asarray(x)[seed_index], tree)  # noqa: E731
    env, env_params = _spaces_env(config, built)
    network = build_network(config, env, env_params)
    algo = built.algo
    epsilon = 0.0 if getattr(config.algo, "noisy", False) else getattr(config.algo, "eval_epsilon", 0.0)
    module = to_torch(network, member(algo.policy_params(restored.state)),
                      obs_stats=obs_stats_of(env, member(algo.env_state(restored.state))),
                      epsilon=epsilon)
    module.metadata = json.dumps({
        "run_dir": str(run_dir), "seed_index": seed_index, "checkpoint_update": restored.step,
        "env_steps": restored.progress.get("env_steps"), "env_id": config.env.id,
        "algo": config.algo.name, "observation_shape": list(env.observation_space(env_params).shape),
        "normalize_obs": config.env.normalize_obs})
    return module


def script(module: nn.Module) -> torch.jit.ScriptModule:
    """The TorchScript form of an exported module (torch marks torch.jit deprecated; it works)."""
    if isinstance(module, torch.jit.ScriptModule):
        return module
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.script(module)


def check_writable(path: str | Path, overwrite: bool = True) -> Path:
    """`path` as a file `save` may write: never a folder, and an existing file only when
    `overwrite` (the CLI's --force); a RunDirError naming the fix otherwise."""
    path = Path(path)
    if path.is_dir():
        raise RunDirError(f"--out {path} is a folder; give a file name such as {path / 'policy.pt'}")
    if path.exists() and not overwrite:
        raise RunDirError(f"--out {path} already exists; pass --force to replace it, or choose another --out")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"--out {path}: {parent} is a file, not a folder")
            break
    return path


def save(module: nn.Module, path: str | Path, *, overwrite: bool = True) -> Path:
    """Writes `module` as TorchScript: `torch.jit.load(path)` gives `forward`, `act` and
    `metadata` with nothing but torch installed. Returns the path written.

    The file appears whole or not at all (written beside it, then renamed over it); an
    existing file is replaced only with `overwrite`."""
    path = check_writable(path, overwrite)
    scripted = script(module)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create the folder for --out {path}: {error.strerror}") from None
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.jit.save(scripted, str(temporary))
        check_writable(path, overwrite)  # nothing appeared there meanwhile
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch reports a failed write as RuntimeError
        reason = getattr(error, "strerror", None) or " ".join(str(error).split())[:200]
        raise RunDirError(f"cannot write --out {path}: {reason}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


__all__: List[str] = ["ObsStats", "build_network", "check_writable", "export_run", "obs_stats_of",
                      "save", "script", "to_torch"]
