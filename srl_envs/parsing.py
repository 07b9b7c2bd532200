"""Small, shared helpers for lenient text-action parsing.

Every game's parser returns a :class:`ParseResult`: the typed action (or ``None``) and,
when the text is not a valid action, a short human-readable reason. Parsers never raise
on any input string.

**The number rule** (every game reads numbers this way). A number is written as digits
with an optional sign and decimal part: ``12``, ``+3``, ``-1``, ``5.9``. A number token
starts at a digit (or its sign) and runs on through letters and digits, and through a
point that has a digit right after it (and such a comma, where a game asks for it:
``number_token(commas=True)``). A token that is not a plain number is no number and makes
the action invalid where it stands (``1e2``, ``0x10``, ``12abc``, ``2.5e1``, ``1.2.3``, and
``1,000`` where commas join) rather than being read as the ``1``, ``0``, ``12`` or ``2`` it
starts with. A point or comma with no digit after it ends the token: ``HARVEST: 12.`` is 12.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_DIGITS",
    "ParseResult",
    "blank_out",
    "number_token",
    "read_number",
    "sanitize_message",
    "truncate_for_parsing",
]

# Actions longer than this are cut before parsing: an LLM never needs more, and regexes
# over megabytes of junk would make the env the bottleneck of a rollout.
MAX_PARSE_CHARS = 4096

MAX_DIGITS = 9  # a number with more digits before its point is read as +-inf ("huge")

_PLAIN_NUMBER_RE = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class ParseResult:
    """A parsed action: ``action`` is ``None`` when the text is not a valid action.

    ``span`` is where in the parsed text the action was read: the character offsets
    ``(start, end)`` of the part that decided it (``"3,3,2,1,1"`` in
    ``"ALLOCATE: 3,3,2,1,1 because"``), or ``None`` when there is no such part (invalid or
    structured actions). A trainer can aim at the tokens that wrote it.
    """

    action: Any
    reason: str = ""
    span: tuple[int, int] | None = None

    @property
    def valid(self) -> bool:
        return self.action is not None


def truncate_for_parsing(text: object) -> str:
    """Coerce anything to a bounded ``str`` (bytes are decoded leniently, None is "")."""
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray):
        text = bytes(text[: MAX_PARSE_CHARS * 4]).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    return text[:MAX_PARSE_CHARS]


def number_token(commas: bool = False) -> str:
    """The regex of one number token (the number rule in the module docstring), to embed in
    a game's patterns. Put ``(?<![\\w.])`` before it where the token may follow text."""
    joiner = "[.,]" if commas else "[.]"
    return rf"[-+]?[0-9](?:[0-9A-Za-z]|{joiner}(?=[0-9]))*"


def read_number(token: str) -> tuple[float | None, str]:
    """A number token -> ``(value, "")``, or ``(None, reason)`` when it is not a plain
    number. More than :data:`MAX_DIGITS` digits before the point read as ``+-inf``."""
    if not _PLAIN_NUMBER_RE.fullmatch(token):
        return None, f"{token[:20]!r} is not a plain number (write digits only, like 12)"
    sign = -1.0 if token[0] == "-" else 1.0
    if len(token.lstrip("+-").split(".", 1)[0].lstrip("0")) > MAX_DIGITS:
        return sign * math.inf, ""
    return float(token), ""


def sanitize_message(text: str, max_chars: int) -> str:
    """Make a free-text message safe to show other agents: one line, printable, bounded."""
    text = _CONTROL_RE.sub(" ", text).replace("\n", " ").replace("\r", " ")
    text = " ".join(text.split())
    return text[:max_chars]


def blank_out(text: str, start: int, end: int) -> str:
    """``text`` with ``[start, end)`` replaced by a line break and spaces: the part no longer
    reads as anything, and every other character keeps its offset (for ``ParseResult.span``)."""
    if end <= start:
        return text
    return text[:start] + "\n" + " " * (end - start - 1) + text[end:]
