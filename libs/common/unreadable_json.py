"""JSON that cannot be read, whatever the reason: malformed, the wrong shape, or nested deeper
than the decoder follows.

msgspec (and Python's ``json``) raise ``RecursionError``, not ``DecodeError``, for a document
nested past their depth: about a thousand levels, fewer the deeper the reader's own stack, and
unknown fields are followed too. Where bytes come from a peer (an upstream's answer, a client's
request), catch :data:`UNREADABLE_JSON`, not ``msgspec.DecodeError`` alone, or such a document
crashes the handler or stream reading it instead of getting the error a malformed one gets.
"""

from __future__ import annotations

from typing import Final

import msgspec

UNREADABLE_JSON: Final = (msgspec.DecodeError, RecursionError)
"""What decoding untrusted JSON with msgspec raises when it cannot be read (``ValidationError``,
the wrong shape, is a ``DecodeError``)."""

NESTED_TOO_DEEP: Final = "nested too deep to read"
"""Why a document is unreadable when the decoder ran out of depth."""


def why_unreadable(exc: msgspec.DecodeError | RecursionError) -> str:
    """What was wrong with the document, as an error message says it (a ``RecursionError``'s
    own text speaks of the interpreter, not of the document)."""
    return NESTED_TOO_DEEP if isinstance(exc, RecursionError) else str(exc)
