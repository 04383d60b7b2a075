"""Durations as operators write them: ``250ms``, ``30s``, ``5m``, ``1h`` or plain seconds."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ``ValueError`` naming the accepted forms."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; use e.g. 250ms, 30s, 5m, 1h or 12.5")
    return float(match["value"]) * _UNIT_SECONDS[match["unit"]]
