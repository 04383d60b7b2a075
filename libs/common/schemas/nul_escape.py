"""Whether JSON bytes may hold a NUL, told from the bytes before anything is decoded.

PostgreSQL holds no U+0000 in text or JSONB, so PAS refuses it at the edge. JSON can carry one
only as the ``\\u0000`` escape (a raw NUL byte is not valid JSON text), so bytes without that
escape decode to texts without NUL, and the checks of every text can be skipped: the analytics
collector then decodes with types that have no no-NUL pattern, the runner does not walk an
input's texts.
"""

from __future__ import annotations

from typing import Final

NUL_ESCAPE: Final = b"\\u0000"
"""How a NUL appears in JSON."""
_BACKSLASH: Final = b"\\"


def may_hold_nul(raw: bytes) -> bool:
    """Whether ``raw`` may decode to a text holding NUL. Only may: a text can also spell a
    backslash followed by ``u0000`` (``"\\\\u0000"``), which decodes to no NUL."""
    # The escape starts with a backslash, which most JSON never holds: looking for that one
    # byte first (memchr) costs a fourteenth of looking for the whole escape.
    return _BACKSLASH in raw and NUL_ESCAPE in raw
