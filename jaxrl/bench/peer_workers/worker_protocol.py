"""What every peer worker shares: versions of installed distributions and the one-line result
protocol (spec as the first argument, result printed after the spec's prefix as the last line).
Standalone like the workers (they import it as a sibling file, in any environment): never
imports jaxrl."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from typing import Any, Callable


def version(distribution: str) -> str:
    """An installed distribution's version, or 'not installed'."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def serve(measure: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Entry point of a worker: the spec is the first argument; the result is the last line printed."""
    spec = json.loads(sys.argv[1])
    result = measure(spec)
    print(spec["result_prefix"] + json.dumps(result), flush=True)
