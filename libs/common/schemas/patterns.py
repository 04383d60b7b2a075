"""Pieces of the regular expressions that constrain wire types, read alike by Python and ECMA.

msgspec checks a ``pattern`` with Python's ``re.search``, and the published JSON Schema hands
the same text to ECMA engines, so a pattern must mean one thing in both.
"""

from __future__ import annotations

from typing import Final

TEXT_END: Final = r"(?![\s\S])"
"""The very end of the text. Python's ``$`` also matches before a final newline, so
``^[a-z]+$`` takes ``"id\\n"`` (which git, Kafka keys and logs then carry); ``\\Z`` would be
Python only (ECMA reads it as a plain ``Z``). No character may follow: the same in both."""
