"""Text -> team battle action. Lenient about form, strict about meaning; never raises.

Grammar (case-insensitive; ``K`` is the number of fields)::

    action   := [allocation] [message]   (in any order, on separate lines or one line)
    message  := "MESSAGE:" <text up to the end of the line>
    allocation, one of:
      positional  "ALLOCATE: 3,3,2,1,1" | "3 3 2 1 1" | "[3, 3, 2, 1, 1]" | "3;3;2;1;1"
      by field    "field 1: 3, field 2: 3, field 5: 4"   (unnamed fields get 0)

How the text is read:

1. The message (``MESSAGE:`` up to the end of its line) is cut out first; it is cleaned
   to one printable line of at most ``message_max_chars`` characters. Messages are
   dropped when there are no teammates or chat is off (``message_max_chars=0``).
2. If the rest contains ``field N: x`` pairs, they are the allocation (1-based field
   numbers; a field named twice or a field that does not exist is invalid).
3. Otherwise the numbers are read positionally after the first ``ALLOCATE``
   (``ALLOCATION``, ``allocate=`` ...) marker, or in the whole text without one. A list is
   a run of numbers separated by commas, semicolons, slashes, bars, spaced dashes
   (``3 - 3``; ``3 -3`` is a negative number) or spaces on one line;
   the first list of exactly ``K`` numbers is the allocation. No such list is invalid
   ("expected K numbers, got n"): a short list is NOT padded with zeros, because which
   fields the missing numbers belong to is a guess.
4. Numbers follow the number rule of :mod:`srl_envs.parsing` (commas separate numbers
   here): a token such as ``2e1``, ``0x3`` or ``3abc`` in the allocation is invalid, with
   the reason. Every number must be a whole, non-negative number (``3.0`` is read as 3,
   ``2.5`` and ``-1`` are invalid) with at most 9 digits.

A sum above the budget is valid here: the rules scale it down (see
:func:`srl_envs.team_battle.core.scale_to_budget`).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from srl_envs.base import to_charset
from srl_envs.parsing import ParseResult, blank_out, number_token, read_number, sanitize_message
from srl_envs.team_battle.core import Params

__all__ = ["TeamAction", "parse_action"]

_NUM = number_token()
_SEP = r"(?:[ \t]*[,;/|][ \t]*|[ \t]+-[ \t]+|[ \t]+)"  # "-" only with spaces: "3 - 3"
_NUM_RE = re.compile(_NUM)
_RUN_RE = re.compile(rf"(?<![\w.]){_NUM}(?:{_SEP}{_NUM})*")
_MESSAGE_RE = re.compile(r"MESSAGE[ \t]*:[ \t]*([^\n]*)", re.IGNORECASE)
_ALLOCATE_RE = re.compile(r"ALLOCAT[A-Z]*[ \t]*[:=]?", re.IGNORECASE)
_FIELD_RE = re.compile(
    rf"(?<![\w])(?:battle)?field[ \t]*#?[ \t]*([0-9]{{1,3}})[ \t]*[:=][ \t]*({_NUM})",
    re.IGNORECASE,
)


class TeamAction(NamedTuple):
    """One agent's move: troops per field (as given, possibly over budget) and a message."""

    troops: tuple[int, ...]
    message: str = ""


def _to_troops(tokens: list[str]) -> tuple[tuple[int, ...] | None, str]:
    """Number tokens -> troop counts, or ``None`` and the reason."""
    troops = []
    for tok in tokens:
        value, reason = read_number(tok)
        if value is None:
            return None, reason
        if tok.startswith("-"):
            return None, f"negative troops ({tok}) are not allowed"
        if tok.partition(".")[2].strip("0"):
            return None, f"troops must be whole numbers, got {tok}"
        if math.isinf(value):
            return None, f"number too large: {tok[:20]}"
        troops.append(int(value))
    return tuple(troops), ""


def _by_field(matches: list[re.Match], k: int) -> ParseResult:
    troops = [0] * k
    seen = set()
    for m in matches:
        field = int(m.group(1))
        if not 1 <= field <= k:
            return ParseResult(None, f"field {field} does not exist (fields are 1-{k})")
        if field in seen:
            return ParseResult(None, f"field {field} is given twice")
        seen.add(field)
        value, reason = _to_troops([m.group(2)])
        if value is None:
            return ParseResult(None, reason)
        troops[field - 1] = value[0]
    return ParseResult(tuple(troops), span=(matches[0].start(), matches[-1].end()))


def _positional(text: str, k: int) -> ParseResult:
    marker = _ALLOCATE_RE.search(text)
    offset = 0 if marker is None else marker.end()
    longest = 0
    for run in _RUN_RE.finditer(text[offset:]):
        tokens = _NUM_RE.findall(run.group())
        if len(tokens) == k:
            troops, reason = _to_troops(tokens)
            if troops is None:
                return ParseResult(None, reason)
            return ParseResult(troops, span=(offset + run.start(), offset + run.end()))
        longest = max(longest, len(tokens))
    if longest == 0:
        where = " after ALLOCATE" if marker is not None else ""
        return ParseResult(
            None, f"no numbers found{where}: expected ALLOCATE: followed by {k} numbers"
        )
    return ParseResult(None, f"expected {k} numbers, got {longest}")


def parse_action(text: str, params: Params) -> ParseResult:
    """Parse ``text`` into a :class:`TeamAction` (see the module docstring); never raises.

    ``ParseResult.action`` is ``None`` when the text is invalid, with the reason.
    """
    if not isinstance(text, str):
        return ParseResult(None, f"action must be text, got {type(text).__name__}")
    if not text.strip():
        return ParseResult(None, "empty action")
    message = ""
    m = _MESSAGE_RE.search(text)
    if m is not None:
        if params.team_size > 1 and params.message_max_chars > 0:
            message = to_charset(sanitize_message(m.group(1), params.message_max_chars))
        text = blank_out(text, m.start(), m.end())
    k = params.num_fields
    fields = list(_FIELD_RE.finditer(text))
    result = _by_field(fields, k) if fields else _positional(text, k)
    if not result.valid:
        return result
    return ParseResult(TeamAction(result.action, message), span=result.span)
