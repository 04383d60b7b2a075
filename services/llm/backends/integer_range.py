"""The integers a JSON Schema's bounds allow, as a grammar rule: llama-cpp-python's converter
reads no ``minimum`` or ``maximum``, so a model held to ``{"type": "integer", "maximum": 365}``
wrote 1000000000000000.

The range is written digit by digit, as a regular expression for a numeric range is: split by
sign and by number of digits, then, within one length, by the first digit where the bounds
differ (``[120, 365]``: ``1[2-9][0-9] | 2[0-9]{2} | 3[0-5][0-9] | 36[0-5]``). JSON's own rules
hold: no leading zero, no ``-0``, at most 16 digits where a side is unbounded (the
converter's own limit for an integer). The bounds are read by ``schema_bounds``.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

MAX_DIGITS: Final = 16


class Part(NamedTuple):
    """Characters from ``low`` to ``high`` (one when equal), ``least`` to ``most`` times."""

    low: str
    high: str
    least: int = 1
    most: int = 1


Alternative = list[Part]


def integer_alternatives(least: int | None, greatest: int | None) -> list[Alternative]:
    """The integers from ``least`` to ``greatest`` as JSON writes them, as alternatives."""
    found: list[Alternative] = []
    if least is None or least < 0:  # the negatives: "-" and the magnitude
        closest = -1 if greatest is None or greatest >= 0 else greatest
        if least is None or least <= closest:
            magnitudes = unsigned(-closest, None if least is None else -least)
            found += [[Part("-", "-"), *alternative] for alternative in magnitudes]
    if greatest is None or greatest >= 0:
        start = 0 if least is None or least < 0 else least
        found += unsigned(start, greatest)
    return found


def gbnf(alternatives: list[Alternative]) -> str:
    return " | ".join(" ".join(_gbnf_part(part) for part in alt) for alt in alternatives)


def regex(alternatives: list[Alternative]) -> str:
    """The same alternatives as a Python regular expression (to test them by)."""
    return "|".join("".join(_regex_part(part) for part in alt) for alt in alternatives)


def unsigned(least: int, greatest: int | None) -> list[Alternative]:
    """Non-negative integers from ``least`` to ``greatest`` (None: up to ``MAX_DIGITS``
    digits)."""
    low = str(least)
    high = "9" * max(MAX_DIGITS, len(low)) if greatest is None else str(greatest)
    if len(low) == len(high):
        return _same_length(low, high)
    found = _same_length(low, "9" * len(low))
    if len(high) - len(low) >= 2:  # every number of the lengths between
        found.append([Part("1", "9"), Part("0", "9", len(low), len(high) - 2)])
    return found + _same_length("1" + "0" * (len(high) - 1), high)


def _same_length(low: str, high: str) -> list[Alternative]:
    """Numbers written with as many digits as ``low`` and ``high``, from one to the other."""
    if low == high:
        return [[Part(digit, digit) for digit in low]]
    rest = len(low) - 1
    any_rest = [Part("0", "9", rest, rest)] if rest else []
    if low[0] == high[0]:
        return [[Part(low[0], low[0]), *alt] for alt in _same_length(low[1:], high[1:])]
    # From low to the end of its first digit, the first digits between, from the start of
    # high's first digit to high; a first or last part that is whole joins the middle.
    first = int(low[0]) + (low[1:] != "0" * rest)
    last = int(high[0]) - (high[1:] != "9" * rest)
    found = []
    if low[1:] != "0" * rest:
        found += [[Part(low[0], low[0]), *alt] for alt in _same_length(low[1:], "9" * rest)]
    if first <= last:
        found.append([Part(str(first), str(last)), *any_rest])
    if high[1:] != "9" * rest:
        found += [[Part(high[0], high[0]), *alt] for alt in _same_length("0" * rest, high[1:])]
    return found


def _repeat(part: Part) -> str:
    if part.least == part.most == 1:
        return ""
    if part.least == part.most:
        return f"{{{part.least}}}"
    return f"{{{part.least},{part.most}}}"


def _gbnf_part(part: Part) -> str:
    chars = f'"{part.low}"' if part.low == part.high else f"[{part.low}-{part.high}]"
    return chars + _repeat(part)


def _regex_part(part: Part) -> str:
    chars = re.escape(part.low) if part.low == part.high else f"[{part.low}-{part.high}]"
    return chars + _repeat(part)
