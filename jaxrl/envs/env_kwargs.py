"""`env.kwargs` checked against the constructor they go to, before any env is built.

Every backend (gymnax, jaxrl's own envs, brax, gymnasium, EnvPool) hands `env.kwargs` to some
constructor as keyword arguments. A key it does not take, or a value of a type its signature
rules out, would otherwise surface as a TypeError traceback from deep inside that library (or,
for host envs, from a worker process). Here it is one `ConfigError` line naming the key, the
env and what the env does take. A value the constructor itself refuses is one line too.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from typing import Any, Callable, Iterable

from jaxrl.errors import ConfigError, JaxrlError

_SIMPLE_TYPES = {"int": numbers.Integral, "float": numbers.Real, "bool": bool, "str": str}


def one_line(text: Any, limit: int = 300) -> str:
    """`text` with every run of whitespace (newlines included) as one space, cut at `limit`."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parameters(target: Callable) -> tuple[dict[str, inspect.Parameter], bool] | None:
    """The keyword parameters `target` (a class or function) takes, and whether it also takes
    any other keyword (`**kwargs`); None when its signature cannot be read."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    named = {name: p for name, p in signature.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"}
    return named, any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())


def refuse_unknown(kwargs: dict, accepted: Iterable[str], what: str) -> None:
    """A ConfigError naming the first keys of `kwargs` outside `accepted` (with close matches)."""
    accepted = sorted(set(accepted))
    unknown = [key for key in kwargs if key not in accepted]
    if not unknown:
        return
    close = difflib.get_close_matches(str(unknown[0]), accepted, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    keys = "key " + repr(unknown[0]) if len(unknown) == 1 else "keys " + ", ".join(map(repr, unknown))
    takes = f"it takes: {', '.join(accepted)}" if accepted else "it takes no kwargs"
    raise ConfigError(f"env.kwargs has unknown {keys} for {what}{hint}; {takes}")


def _expected_type(annotation: Any) -> tuple[str, Any, bool] | None:
    """(`int`, numbers.Integral, optional) for a plain annotation such as `int` or `int | None`
    (strings too, as `from __future__ import annotations` leaves them); None otherwise."""
    if isinstance(annotation, type):
        annotation = annotation.__name__
    if not isinstance(annotation, str):
        return None
    parts = set(annotation.replace(" ", "").replace("Optional[", "").rstrip("]").split("|"))
    optional = "None" in parts
    parts.discard("None")
    if len(parts) != 1 or next(iter(parts)) not in _SIMPLE_TYPES:
        return None
    name = next(iter(parts))
    return name, _SIMPLE_TYPES[name], optional


def _default_type(default: Any) -> tuple[str, Any, bool] | None:
    """For a parameter without annotation, what its default says: a bool default wants a bool,
    a number default a number (a string there is surely a mistake); None for anything else."""
    if isinstance(default, bool):
        return "bool", bool, False
    if isinstance(default, numbers.Real):
        return "number", numbers.Real, False
    return None


def refuse_wrong_types(kwargs: dict, named: dict[str, inspect.Parameter], what: str) -> None:
    """A ConfigError for a value whose type the parameter's plain annotation (or, without one,
    its default) rules out: a string for an `int`, a float for a `bool`, ..."""
    for key, value in kwargs.items():
        param = named.get(key)
        if param is None:
            continue
        expected = (_expected_type(param.annotation) if param.annotation is not param.empty
                    else _default_type(param.default))
        if not expected:
            continue
        name, kind, optional = expected
        if value is None and (optional or param.default is None):
            continue
        fits = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not fits:
            raise ConfigError(f"env.kwargs.{key} must be {'an' if name == 'int' else 'a'} {name} for {what}, "
                              f"got {one_line(repr(value), 80)} ({type(value).__name__})")


def check_defaults(kwargs: dict | None, defaults: dict[str, Any], what: str) -> None:
    """`check` for a constructor known only by its default values (EnvPool's config): keys
    outside `defaults` are refused, and values whose type differs from a plain default's."""
    if not kwargs:
        return
    refuse_unknown(kwargs, defaults, what)
    named = {key: inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=value,
                                    annotation=type(value).__name__)
             for key, value in defaults.items() if key in kwargs}
    refuse_wrong_types(kwargs, named, what)


def check(kwargs: dict | None, target: Callable | None, what: str, also: Iterable[str] = ()) -> None:
    """Refuses keys `target`'s signature does not take (`also`: keys taken on its behalf, e.g.
    gymnasium.make's own) and values its plain annotations rule out. A target that takes
    `**kwargs`, or whose signature cannot be read, gets only the type check it allows."""
    if not kwargs or target is None:
        return
    read = parameters(target)
    if read is None:
        return
    named, open_ended = read
    if not open_ended:
        refuse_unknown(kwargs, set(named) | set(also), what)
    refuse_wrong_types(kwargs, named, what)


# What a constructor raises about a value it cannot use (a missing package or a download
# failure is not the kwargs' doing, and passes unchanged).
VALUE_ERRORS = (TypeError, ValueError, AssertionError, KeyError, IndexError, AttributeError, ArithmeticError)


def construct(build: Callable[[], Any], kwargs: dict | None, what: str) -> Any:
    """`build()`, with a constructor that refuses a value of `env.kwargs` reported as one
    ConfigError line (without kwargs, whatever it raises is not the config's doing and passes)."""
    if not kwargs:
        return build()
    try:
        return build()
    except JaxrlError:
        raise
    except VALUE_ERRORS as error:
        raise ConfigError(f"{what} refused env.kwargs {one_line(kwargs, 120)}: "
                          f"{type(error).__name__}: {one_line(error)}") from error
