"""The structured mode's contract with MARL libraries: one action cast, numeric infos.

**Actions.** Libraries send actions in many types: a numpy scalar, a 1-element array out of
a batched policy, a float out of a continuous head, a torch tensor. :func:`cast_action`
is the one rule every game applies. An action is cast when a single reading of it lies in
the space:

* numbers, numpy arrays, torch tensors (any device; gradients are dropped), lists and
  tuples of numbers;
* of an integer dtype, or of a float dtype whose values are all whole numbers (``5.0``);
* with the space's shape once axes of length 1 are set aside: ``Discrete`` takes any
  1-element value (``5``, ``[5]``, ``[[5.0]]``), ``MultiDiscrete([n] * K)`` takes ``K``
  values laid out as ``(K,)``, ``(1, K)`` or ``(K, 1)``.

Anything else (fractions, NaN, bools, strings, ``None``, the wrong size, a value outside
the space) raises a ``ValueError`` naming the agent, the value and the space, before the
env changes: a library that sends a malformed action learns it at once instead of training
on fallback actions. (Text mode never raises: any string is an action there.)

**Infos.** :func:`numeric_info` keeps the numbers of an info dict (bools, ints and floats,
as Python types, and dicts of them) and drops the rest (strings, ``None``, tuples), so
that replay buffers (Tianshou's, AgileRL's) and loggers can stack infos step after step.
The structured mode returns infos in this form.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["cast_action", "numeric_info"]


def _as_array(action: Any) -> np.ndarray | None:
    """``action`` as a numeric numpy array, or ``None`` when it has no such reading."""
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    if torch is not None and isinstance(action, torch.Tensor):
        action = action.detach().cpu()
        if action.dtype.is_floating_point:
            action = action.double()
        action = action.numpy()
    if not isinstance(action, np.ndarray | np.generic | int | float | list | tuple):
        return None
    try:
        array = np.asarray(action)
    except (ValueError, TypeError, OverflowError):  # ragged lists, ints beyond int64
        return None
    if array.dtype.kind not in "iuf" or array.size == 0:  # bools, strings, objects
        return None
    return array


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _element(array: np.ndarray, space: spaces.Space) -> int | np.ndarray | None:
    """``array`` (of the space's shape) as an element of ``space``, or ``None``."""
    whole = array.dtype.kind in "iu" or bool(
        np.all(np.isfinite(array)) and np.all(array == np.floor(array))
    )
    high = space.start + (space.n if isinstance(space, spaces.Discrete) else space.nvec)
    if not (whole and np.all(array >= space.start) and np.all(array < high)):
        return None  # range first: a huge float must not overflow the int cast
    cast = array.astype(np.int64)
    value = int(cast) if isinstance(space, spaces.Discrete) else cast
    return value if space.contains(value) else None


def _plain(action: Any, space: spaces.Space) -> bool:
    """Whether ``action`` is an integer scalar (``Discrete``) or an integer array of the
    space's shape (``MultiDiscrete``) inside the space."""
    if isinstance(space, spaces.Discrete):
        return (
            isinstance(action, int | np.integer)
            and not isinstance(action, bool)
            and space.start <= action < space.start + space.n
        )
    return (
        type(action) is np.ndarray
        and action.dtype.kind in "iu"
        and action.shape == space.shape
        and bool((action >= space.start).all() and (action < space.start + space.nvec).all())
    )


def cast_action(agent: str, action: Any, space: spaces.Space) -> int | np.ndarray:
    """``action`` as an element of ``space`` (an ``int`` for ``Discrete``, an ``int64``
    array for ``MultiDiscrete``), or a ``ValueError`` (see the module docstring)."""
    if action is None:
        raise ValueError(
            f"no action for {agent!r}: step() needs one in {space} for every live agent"
        )
    if _plain(action, space):  # what samplers and most libraries send: no cast to look for
        return int(action) if isinstance(space, spaces.Discrete) else action.astype(np.int64)
    array = _as_array(action)
    if array is not None and _squeezed(array.shape) == _squeezed(space.shape):
        value = _element(array.reshape(space.shape), space)
        if value is not None:
            return value
    shown = repr(action)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    raise ValueError(
        f"structured action of {agent!r} is not in its action space {space}: got {shown} "
        "(send whole numbers in the space's range, as ints, whole floats, or arrays or "
        "tensors of its shape)"
    )


_PLAIN = (bool, int, float)


def numeric_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The bools, ints and floats of ``info`` (numpy scalars as Python numbers; nested
    dicts kept, empty ones dropped); everything else is left out."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        kind = type(value)
        if kind in _PLAIN:
            out[key] = value
        elif kind is dict:
            inner = numeric_info(value)
            if inner:
                out[key] = inner
        elif isinstance(value, np.generic) and value.dtype.kind in "biuf":
            out[key] = value.item()
    return out
