"""Free text whose numbers are a document's own, as a JSON Schema string with a ``pattern``.

Given the quantities a document writes (``$383.3 billion``, ``13 percent``, ``2023``: what
:func:`libs.common.grounding.quantities_as_written` reads), :func:`grounded_string` gives a
schema that a string matches only when every digit (0-9) in it belongs to one of those
quantities, written as the document writes it. A model decoding under it (a grammar on the
embedded model and on Ollama, guided decoding on vLLM, structured outputs on OpenAI) writes
its words freely and copies its numbers.

The text is at most ``parts`` parts, each perhaps a quantity and then 1 to ``max_units`` units;
it may end with one more quantity and a full stop. A unit is a plain character (no digit, no
quote, backslash or control character), perhaps after a ``.`` or ``,``, or a non-space
character after a sign (``+``, ``-``, the minus sign or the en dash). So a quantity is never
glued to a digit and no sign comes before one: a model cannot join two of the document's
numbers into a third (``4`` and ``.5``) or turn one negative (``- 18%``). Quantities are
offered without their sign: a text says a fall in words. Bounding the quantities bounds a loop
over them (``2025. 2025. 2025.``), which a bound on units alone, a quantity being one, would
let run past any token budget.

What follows a number is free: a model may still write ``4 billion`` where the document's ``4``
counts quarters. The check after the answer (libs/common/grounding.py) judges that.

The expression keeps to what both llama.cpp's schema converter and ECMA-262 read: plain groups
(no ``(?:``), character classes, ``|``, ``?`` and bounded repetition, anchored. A character that
is special to either is written as a one-character class (``[.]``, ``[$]``): the converter
copies ``\\.`` into GBNF, which has no such escape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Excluded from a plain character: digits, what JSON escapes, and what may not come right
# before a digit. "-" is last in its class: GBNF has no "\-".
_SIGNS = "+\u2212\u2013-"
_PLAIN = f'[^0-9"\\\\\\x00-\\x1f\\x7f.,{_SIGNS}]'
# After a sign, not a space or a currency either: "- 18%", "-$18" read as negative.
_AFTER_SIGN = f'[^0-9"\\\\\\x00-\\x20\\x7f.,$\u20ac\u00a3\u00a5{_SIGNS}]'
_UNIT = f"([.,]?{_PLAIN}|[{_SIGNS}]{_AFTER_SIGN})"
_UNIT_CHARS = 2
LONGEST_QUANTITY = 40
"""Longer quantities are left out (a model cannot write them)."""
_AS_CLASS = str.maketrans({c: f"[{c}]" for c in "\\^$.|?*+()[]{}/"})
"""Special characters as one-character classes (GBNF has no ``\\.``)."""


def _literal(text: str) -> str:
    return text.translate(_AS_CLASS)


def _usable(quantities: Iterable[str]) -> list[str]:
    # Without a sign: a document's "$1.10-$1.25" is read as "-$1.25", which is no fall; a
    # text says a fall in words.
    unsigned = (q.lstrip(_SIGNS) for q in quantities)
    # In one order whatever the order given (a set's order changes with the hash seed).
    return sorted(
        {q for q in unsigned if 0 < len(q) <= LONGEST_QUANTITY and '"' not in q and "\\" not in q},
        key=lambda q: (len(q), q),
    )


def text_pattern(quantities: Iterable[str], *, max_units: int, parts: int) -> str:
    """The ``pattern`` of a text whose digits are all inside ``quantities`` (see the module):
    up to ``parts`` parts of a quantity perhaps and 1 to ``max_units`` units, then perhaps a
    quantity."""
    return _pattern(_usable(quantities), max_units=max_units, parts=parts)


def _pattern(written: list[str], *, max_units: int, parts: int) -> str:
    text = f"{_UNIT}{{1,{max_units}}}"
    if written:
        quantity = f"({'|'.join(_literal(q) for q in reversed(written))})"
        text = f"({quantity}?{text}){{1,{parts}}}{quantity}?"
    else:
        text = f"({text}){{1,{parts}}}"
    return f"^{text}[.]?$"


def max_chars(*, max_units: int, parts: int, longest: int = LONGEST_QUANTITY) -> int:
    """The longest text :func:`text_pattern` lets through, in characters, its quantities
    ``longest`` characters at most."""
    return parts * max_units * _UNIT_CHARS + (parts + 1) * longest + 1


def grounded_string(quantities: Iterable[str], *, max_units: int, parts: int) -> dict[str, Any]:
    """A JSON Schema string of :func:`text_pattern`, with its length in characters."""
    written = _usable(quantities)
    return {
        "type": "string",
        "pattern": _pattern(written, max_units=max_units, parts=parts),
        "maxLength": max_chars(
            max_units=max_units, parts=parts, longest=max(map(len, written), default=0)
        ),
    }
