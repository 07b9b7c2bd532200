"""Argument checks shared by every env: one rule per kind of argument, one message format.

Every check raises a ``ValueError`` that names the argument, shows the bad value and says
what is allowed (``"cooperation_level must be a number in [0.0, 1.0], got '0.5'"``), and
returns the value as a plain Python object. Numbers are numbers: a string such as ``"0.5"``
or a bool is never read as one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_float_range",
    "check_int_range",
    "check_keywords",
    "check_unit_interval",
    "episode_length_arg",
]


def check_choice(name: str, value: Any, allowed: tuple) -> Any:
    """``value`` if it is one of ``allowed`` (compared by type and value, so ``1`` is not
    ``True`` and an array is no choice)."""
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_int_range(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (``high=None``: no upper bound)."""
    allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def check_float_range(
    name: str, value: Any, low: float, high: float | None = None, *, low_open: bool = False
) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``;
    ``high=None``: no upper bound). Ints are accepted; strings and bools are not."""
    upper = f"{high}]" if high is not None else "inf)"
    allowed = f"{'(' if low_open else '['}{low}, {upper}"
    numeric = isinstance(value, int | float | np.integer | np.floating)
    if isinstance(value, bool | np.bool_) or not numeric or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number in {allowed}, got {value!r}")
    v = float(value)
    if v < low or (low_open and v == low) or (high is not None and v > high):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return v


def check_unit_interval(name: str, value: Any) -> float:
    """A number in [0, 1] (cooperation levels)."""
    return check_float_range(name, value, 0.0, 1.0)


def check_keywords(owner: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Raise a ``ValueError`` naming the first keyword of ``kwargs`` that ``fn`` (a function
    or a class) does not take, with the keywords it does take. ``fn`` taking ``**kwargs``
    accepts everything: it checks its own."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    allowed = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{owner} has no argument {unknown[0]!r}: the arguments are {allowed}")


def episode_length_arg(
    episode_length: Any, max_cycles: Any, default: int | None, low: int, high: int | None
) -> int | None:
    """The episode length from ``episode_length`` or ``max_cycles`` (PettingZoo's name for
    it), an integer in ``[low, high]`` (``high=None``: no upper bound); ``default`` when
    neither is given (None: no length). Giving both with different values is an error."""
    if max_cycles is None:
        if episode_length is None:
            return default
        return check_int_range("episode_length", episode_length, low, high)
    if episode_length is not None and episode_length != max_cycles:
        raise ValueError(
            "max_cycles is PettingZoo's name for episode_length: give one of them, got "
            f"episode_length={episode_length!r} and max_cycles={max_cycles!r}"
        )
    return check_int_range("max_cycles", max_cycles, low, high)
