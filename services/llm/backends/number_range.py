"""The numbers a JSON Schema's bounds allow, as a grammar rule: llama-cpp-python's converter
reads no ``minimum`` or ``maximum`` of a ``number``, so a model held to a confidence,
``{"type": "number", "minimum": 0, "maximum": 1}``, may write 85 or 3e8.

A bounded number is written without an exponent (JSON allows either; a value with an exponent
cannot be bounded digit by digit): a sign, an integer part, perhaps a fraction, and never
``-0``. Its magnitudes split into the integer parts every fraction of which is in range
(``integer_range``'s digits) and at most two at the ends, the bounds' own integer parts,
whose fractions are compared with the bound's digit by digit: ``[0.25, 3]`` is ``0.``
followed by ``2[5-9]...`` or ``[3-9]...``, then ``1`` and ``2`` with any fraction, then ``3``
with zeros. The bounds are read (exactly, drafts 4 to 2020-12) by ``schema_bounds``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from services.llm.backends.integer_range import Alternative, Part, unsigned
from services.llm.backends.schema_bounds import Bound

FRACTION_DIGITS: Final = 16
"""A fraction's free digits at most (the converter's own limit for a number's fraction)."""

_ANY_DIGITS: Final = Part("0", "9", 0, FRACTION_DIGITS)
_POINT: Final = Part(".", ".")


def number_alternatives(least: Bound | None, greatest: Bound | None) -> list[Alternative]:
    """The numbers from ``least`` to ``greatest`` as alternatives, written without an
    exponent. The bounds must admit a number (``schema_bounds.number_bounds`` checks)."""
    found: list[Alternative] = []
    if least is None or least.value < 0:  # the negatives: "-" and a magnitude above zero
        closest = Bound(Decimal(0), True)
        if greatest is not None and greatest.value < 0:
            closest = Bound(-greatest.value, greatest.exclusive)
        furthest = None if least is None else Bound(-least.value, least.exclusive)
        found += [[Part("-", "-"), *alt] for alt in _magnitudes(closest, furthest)]
    if greatest is None or greatest.value > 0 or (greatest.value == 0 and not greatest.exclusive):
        start = Bound(Decimal(0), False) if least is None or least.value < 0 else least
        found += _magnitudes(start, greatest)
    return found


def _split(value: Decimal) -> tuple[int, str]:
    """A non-negative value's integer part and its fraction's digits, trailing zeros off."""
    integral, _, fraction = format(value, "f").partition(".")
    return int(integral), fraction.rstrip("0")


def _magnitudes(low: Bound, high: Bound | None) -> list[Alternative]:
    """Non-negative numbers from ``low`` to ``high`` (None: integer parts up to
    ``integer_range.MAX_DIGITS`` digits), unsigned."""
    low_integral, low_fraction = _split(low.value)
    if high is None:
        high_integral, high_fraction = None, None
    else:
        high_integral, high_fraction = _split(high.value)
    if high is not None and low_integral == high_integral:
        fractions = _fractions(low_fraction, low.exclusive, high_fraction, high.exclusive)
        return _joined(unsigned(low_integral, low_integral), fractions)
    found: list[Alternative] = []
    first_whole = low_integral
    if low_fraction or low.exclusive:  # low's integer part takes only the fractions above it
        found += _joined(
            unsigned(low_integral, low_integral),
            _fractions(low_fraction, low.exclusive, None, False),
        )
        first_whole += 1
    last_whole = None if high_integral is None else high_integral - 1
    if last_whole is None or first_whole <= last_whole:
        found += _joined(unsigned(first_whole, last_whole), _fractions("", False, None, False))
    if high is not None and high_integral is not None:
        found += _joined(
            unsigned(high_integral, high_integral),
            _fractions("", False, high_fraction, high.exclusive),
        )
    return found


def _joined(integral: list[Alternative], fractions: list[Alternative]) -> list[Alternative]:
    return [[*whole, *fraction] for whole in integral for fraction in fractions]


def _fractions(
    low: str, low_exclusive: bool, high: str | None, high_exclusive: bool
) -> list[Alternative]:
    """What may follow an integer part: nothing (a fraction of zero) or a point and digits
    whose fraction lies between ``low`` and ``high`` (digits; None: below one)."""
    rest = _tail(low, low_exclusive, high, high_exclusive)
    return [[_POINT, *digits] if digits else [] for digits in rest]


def _zero_fits(low: str, low_exclusive: bool, high: str | None, high_exclusive: bool) -> bool:
    """Whether the digits may end here: the rest, all zeros, against the bounds' rest."""
    return low == "" and not low_exclusive and (high != "" or not high_exclusive)


def _tail(
    low: str, low_exclusive: bool, high: str | None, high_exclusive: bool
) -> list[Alternative]:
    """Digits, none included, whose fraction lies between ``low`` and ``high``."""
    return [
        *([[]] if _zero_fits(low, low_exclusive, high, high_exclusive) else []),
        *_digits(low, low_exclusive, high, high_exclusive),
    ]


def _digits(
    low: str, low_exclusive: bool, high: str | None, high_exclusive: bool
) -> list[Alternative]:
    """One digit or more whose fraction (``0.<digits>``) lies between those of ``low`` and
    ``high``: digit strings, trailing zeros off, ``""`` for zero, ``high`` None for one
    (excluded). Each step takes a digit off the bounds, so the recursion ends."""
    low_binds = low != "" or low_exclusive
    if not low_binds and high is None:
        return [[Part("0", "9", 1, FRACTION_DIGITS)]]
    if low == "" and high is None:  # above zero: a nonzero digit somewhere
        return [[Part("0", "0", 0, FRACTION_DIGITS), Part("1", "9"), _ANY_DIGITS]]
    if low == "" and high == "":  # zero itself: only zeros, if zero is allowed
        return [] if low_exclusive or high_exclusive else [[Part("0", "0", 1, FRACTION_DIGITS)]]
    low_digit = int(low[0]) if low else 0
    high_digit = 9 if high is None else int(high[0]) if high else 0
    if low_binds and high is not None and low_digit == high_digit:
        rest = _tail(low[1:], low_exclusive, high[1:], high_exclusive)
        return [[Part(str(low_digit), str(low_digit)), *alt] for alt in rest]
    found: list[Alternative] = []
    first_free, last_free = low_digit, high_digit
    if low_binds:
        rest = _tail(low[1:], low_exclusive, None, False)
        found += [[Part(str(low_digit), str(low_digit)), *alt] for alt in rest]
        first_free += 1
    if high is not None:
        last_free -= 1
    if first_free <= last_free:
        found.append([Part(str(first_free), str(last_free)), _ANY_DIGITS])
    if high is not None:
        rest = _tail("", False, high[1:], high_exclusive)
        found += [[Part(str(high_digit), str(high_digit)), *alt] for alt in rest]
    return found
