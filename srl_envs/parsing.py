"""Small, shared helpers for lenient text-action parsing.

Every game's parser returns a :class:`ParseResult`: the typed action (or ``None``) and,
when the text is not a valid action, a short human-readable reason. Parsers never raise
on any input string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ParseResult",
    "blank_out",
    "find_integers",
    "sanitize_message",
    "truncate_for_parsing",
]

# Actions longer than this are cut before parsing: an LLM never needs more, and regexes
# over megabytes of junk would make the env the bottleneck of a rollout.
MAX_PARSE_CHARS = 4096

_INT_RE = re.compile(r"(?<![\w.])[-+]?\d{1,9}(?:\.\d+)?(?![\w])")
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


def find_integers(text: str) -> list[float]:
    """All standalone numbers in ``text`` in order (``"harvest 5 units"`` -> ``[5.0]``)."""
    return [float(m.group()) for m in _INT_RE.finditer(text)]


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
