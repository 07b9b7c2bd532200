"""Text -> typed action for the commons game. Never raises, whatever the input.

Grammar (case-insensitive; the canonical form is the one the prompt shows)::

    HARVEST: 12
    MESSAGE: let's each take 12

How a text is read, in order:

1. **Message.** The first ``MESSAGE:`` (or ``MESSAGE =``) and the rest of its line is the
   public message. It is made printable ASCII (other characters become ``?``), put on one
   line, stripped of surrounding quotes and cut to ``message_max_chars``. It is optional;
   with ``message_max_chars = 0`` messages are ignored. The message never counts as the
   harvest.
2. **Harvest**, searched in the text outside the message:

   a. the first ``HARVEST: <n>`` / ``harvest=<n>`` (markdown such as ``**HARVEST:** 5``
      is fine);
   b. else the first phrase "harvest/take/catch ... <n>" on one line
      ("I harvest 5 units", "I will take about 7");
   c. else, when the text holds exactly one distinct number, that number ("5").

   If none of these is found outside the message, an explicit ``HARVEST: <n>`` inside
   the message line still counts ("MESSAGE: hi HARVEST: 5" on one line). ``<n>`` is a
   number or a word from zero to twenty.
3. **Numbers** follow the number rule of :mod:`srl_envs.parsing`, with commas joining
   digits: a harvest written ``1e2``, ``1,000``, ``0x10``, ``12abc`` or ``2.5e1`` is
   invalid (with the reason), never read as the number it starts with. In rule 2c such
   tokens are not numbers ("2nd try: 5" is 5).
4. **Range.** Decimals are rounded down ("5.9" -> 5). Negative numbers are invalid.
   Numbers above ``max_harvest`` are clamped to ``max_harvest`` and stay valid (the
   intent "take as much as I can" is clear; the rules cap it anyway).

Invalid texts (empty, no number, several numbers and no keyword, negative) return
``ParseResult(None, reason)``; the env then applies its documented fallback.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from srl_envs.parsing import (
    ParseResult,
    blank_out,
    number_token,
    read_number,
    sanitize_message,
    truncate_for_parsing,
)

__all__ = ["HarvestAction", "clean_message", "parse_action"]


class HarvestAction(NamedTuple):
    """The typed action: the requested harvest and the public message ("" for none)."""

    amount: int
    message: str = ""


_WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen", "twenty"),
)
_WORD_VALUE = {w: i for i, w in enumerate(_WORDS)}
_TOKEN = number_token(commas=True)
_NUM = r"(" + _TOKEN + "|(?:" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b)"
_DECOR = r"[\s*_`'\"]*"
_FLAGS = re.IGNORECASE | re.ASCII

_MESSAGE_RE = re.compile(r"\bmessage\b" + _DECOR + r"[:=][ \t]*([^\n]*)", _FLAGS)
_STRICT_RE = re.compile(r"\bharvest\b" + _DECOR + r"[:=]" + _DECOR + _NUM, _FLAGS)
_LOOSE_RE = re.compile(
    r"\b(?:harvest|take|catch)(?:s|ing|ed|n)?\b[^0-9\n+-]{0,24}?(?<![\w.])" + _NUM, _FLAGS
)
_BARE_RE = re.compile(r"(?<![\w.])(" + _TOKEN + ")", re.ASCII)
_QUOTES = "\"'`"
_EXPECTED = "expected 'HARVEST: <number>'"


def clean_message(text: str, max_chars: int) -> str:
    """Printable ASCII, one line, no surrounding quotes, at most ``max_chars``."""
    if max_chars <= 0:
        return ""
    text = text[: max_chars * 4].encode("ascii", "replace").decode("ascii")
    text = sanitize_message(text, max_chars * 2).strip("*_ ")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    return text[:max_chars].rstrip()


def _to_number(token: str) -> tuple[float | None, str]:
    """A number token or word -> ``(value, "")`` (``+-inf`` when huge), or ``(None, reason)``."""
    word = _WORD_VALUE.get(token.lower())
    if word is not None:
        return float(word), ""
    return read_number(token)


def _harvest_number(text: str) -> tuple[float | None, str, tuple[int, int] | None]:
    """The harvest number of ``text`` (rules 2a-2c) and where it is, or ``None`` and a
    reason."""
    m = _STRICT_RE.search(text) or _LOOSE_RE.search(text)
    if m is not None:
        value, reason = _to_number(m.group(1))
        return value, reason, m.span(1) if value is not None else None
    bare, malformed = [], []
    for b in _BARE_RE.finditer(text):
        value, reason = read_number(b.group(1))
        (bare if value is not None else malformed).append((value, reason, b.span(1)))
    values = {v for v, _, _ in bare}
    if len(values) == 1:
        return values.pop(), "", bare[0][2]
    if not values:
        if malformed:
            return None, f"{malformed[0][1]}; {_EXPECTED}", None
        return None, f"no harvest number found: {_EXPECTED}", None
    shown = ", ".join(f"{v:g}" for v in sorted(values)[:5])
    return None, f"ambiguous: several numbers ({shown}) and no 'HARVEST:'; {_EXPECTED}", None


def parse_action(text: object, max_harvest: int, message_max_chars: int) -> ParseResult:
    """Parse an agent's text into a :class:`HarvestAction` (see the module docstring)."""
    try:
        text = truncate_for_parsing(text)
    except Exception as exc:  # str() of an arbitrary object may raise anything
        return ParseResult(None, f"action is not text: {type(exc).__name__}")
    if not text.strip():
        return ParseResult(None, f"empty action: {_EXPECTED}")
    message = ""
    body = text
    m = _MESSAGE_RE.search(text)
    if m is not None:
        message = clean_message(m.group(1), message_max_chars)
        body = blank_out(text, m.start(), m.end())
    value, reason, span = _harvest_number(body)
    if value is None and m is not None:
        strict = _STRICT_RE.search(text, m.start(1), m.end(1))
        if strict is not None:
            value, reason = _to_number(strict.group(1))
            span = strict.span(1)
    if value is None:
        return ParseResult(None, reason)
    if value < 0:
        shown = "a huge negative number" if math.isinf(value) else f"{value:g}"
        return ParseResult(None, f"harvest must be 0 or more, got {shown}")
    amount = max_harvest if value >= max_harvest else math.floor(value)
    return ParseResult(HarvestAction(amount, message), span=span)
