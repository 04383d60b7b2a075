"""The bounds a JSON Schema puts on an integer or a number, read once for both, as drafts 4
(boolean ``exclusive*`` beside ``minimum``/``maximum``) to 2020-12 (numeric ``exclusive*``)
write them. Values are read exactly (``Decimal`` of the number as the schema wrote it)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, NamedTuple


class EmptyRange(ValueError):
    """The bounds admit no value of the schema's type."""


class Bound(NamedTuple):
    value: Decimal
    exclusive: bool


def number_bounds(schema: dict[str, Any]) -> tuple[Bound | None, Bound | None]:
    """The lower and upper bounds of the schema's numbers (None: unbounded), the tighter of
    each kind where it gives two."""
    least, greatest = _bounds(schema)
    if least is not None and greatest is not None and _crossed(least, greatest):
        raise EmptyRange(f"no number lies between the bounds of {schema}")
    return least, greatest


def integer_bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """The least and greatest integers the schema's bounds allow (None: unbounded)."""
    lower, upper = _bounds(schema)
    least = None
    if lower is not None:
        value = lower.value
        least = math.floor(value) + 1 if lower.exclusive else math.ceil(value)
    greatest = None
    if upper is not None:
        value = upper.value
        greatest = math.ceil(value) - 1 if upper.exclusive else math.floor(value)
    if least is not None and greatest is not None and least > greatest:
        raise EmptyRange(f"no integer lies between the bounds of {schema}")
    return least, greatest


def _bounds(schema: dict[str, Any]) -> tuple[Bound | None, Bound | None]:
    lows: list[Bound] = []
    highs: list[Bound] = []
    if (low := _decimal(schema.get("minimum"))) is not None:
        lows.append(Bound(low, schema.get("exclusiveMinimum") is True))
    if (high := _decimal(schema.get("maximum"))) is not None:
        highs.append(Bound(high, schema.get("exclusiveMaximum") is True))
    if (above := _decimal(schema.get("exclusiveMinimum"))) is not None:
        lows.append(Bound(above, True))
    if (below := _decimal(schema.get("exclusiveMaximum"))) is not None:
        highs.append(Bound(below, True))
    least = max(lows, default=None)  # at the same value, the exclusive one (True > False)
    greatest = min(highs, key=lambda bound: (bound.value, not bound.exclusive), default=None)
    return least, greatest


def _crossed(least: Bound, greatest: Bound) -> bool:
    if least.value == greatest.value:
        return least.exclusive or greatest.exclusive
    return least.value > greatest.value


def _decimal(value: Any) -> Decimal | None:
    # A bool is an int to Python: draft 4's ``exclusiveMinimum: true`` is not a bound of 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    # repr: the shortest text that reads back as the float, which is what the schema wrote.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
