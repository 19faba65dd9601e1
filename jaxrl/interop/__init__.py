"""Interop with other frameworks: export a trained network to PyTorch (extra `torch`).

`to_torch`, `export_run`, `save` and `ObsStats` live in `jaxrl.interop.torch_export`; they are
imported on first use, so `import jaxrl.interop` works without torch, and using them without
it raises a ConfigError naming `pip install "jaxrl[torch]"`.
"""

import importlib
from typing import Any

_TORCH_NAMES = ("ObsStats", "build_network", "check_writable", "export_run", "obs_stats_of", "save",
                "script", "to_torch")

__all__ = list(_TORCH_NAMES)


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:  # sys.modules decides, so a failed import is retried next time
        return getattr(importlib.import_module("jaxrl.interop.torch_export"), name)
    raise AttributeError(f"module 'jaxrl.interop' has no attribute {name!r}")
