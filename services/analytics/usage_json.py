"""Usage records read straight into a usage table by Arrow's JSON reader, when that is safe.

Decoding records with msgspec and then building Arrow columns from the structs holds the
interpreter lock about 1.3 µs an event, a third of the collector's time under it
(docs/benchmarks.md). Arrow's JSON reader parses a batch in C++ threads that do not hold it.
It is not a validator, so a batch takes this path only when it can be shown to hold exactly
what the wire type (:class:`~services.analytics.nul_free.NulFreeUsage`) accepts, read to the
same values; otherwise :func:`usage_table_from_json` returns ``None`` and msgspec decodes the
batch as before (naming each refusal, which goes to the DLQ). Shown so:

- Each record is one JSON object: the records are read as one stream, one after the other,
  and give as many rows as there are records, each starting with ``{`` (so none gives no row,
  and none gives two). A record spread over lines reads alike; one cut across the reader's
  blocks fails to parse. The batch holds no backslash, so there is no escape (no NUL, no lone
  surrogate) and a string is its bytes.
- Given each field's type, the reader refuses a value of another JSON type, an integer with a
  fraction or beyond the column's 32 bits, a key given twice; the table it reads is then
  checked to hold valid UTF-8 (the reader itself takes any bytes in a string).
- On the columns, every constraint of the wire type, read from it (``msgspec.inspect``): no
  null where the type has none (a missing field reads as null too: where no record of the
  batch names a field that has a default, its nulls are that default, as msgspec fills it;
  otherwise msgspec reads the batch); lengths in characters; numbers within bounds and finite (Arrow
  reads NaN and infinity, msgspec refuses them); literals among their values; times in RFC
  3339 with an offset, which Arrow converts to UTC as msgspec does and refuses where msgspec
  does (a 30th of February, a 61st minute).

A type this module does not know how to check fails at import, not at run time.
tests/analytics/test_usage_json.py holds the two paths to the same table or the same refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Final, cast

import msgspec
import msgspec.inspect as mi
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from libs.common.schemas.usage import EARLIEST_TIME, LATEST_TIME
from services.analytics.nul_free import NulFreeUsage
from services.analytics.usage_table import TIMESTAMP, USAGE_FIELDS, USAGE_SCHEMA, row_numbers

Check = Callable[[pa.ChunkedArray], bool]

# Times as msgspec writes and reads them: fractions past microseconds it rounds, Arrow refuses.
_RFC3339: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"


def _lengths(low: int, high: int | None) -> Check:
    def check(column: pa.ChunkedArray) -> bool:
        span = pc.min_max(pc.utf8_length(column))
        if not span["min"].is_valid:  # no value but nulls
            return True
        return bool(span["min"].as_py() >= low and (high is None or span["max"].as_py() <= high))

    return check


def _within(low: float | None, high: float | None, *, finite: bool) -> Check:
    def check(column: pa.ChunkedArray) -> bool:
        held = [
            *([pc.is_finite(column)] if finite else []),
            *([pc.greater_equal(column, low)] if low is not None else []),
            *([pc.less_equal(column, high)] if high is not None else []),
        ]
        return all(pc.all(values).as_py() is not False for values in held)

    return check


def _among(values: tuple[Any, ...]) -> Check:
    allowed = pa.array(values)
    return lambda column: bool(pc.all(pc.is_in(column, value_set=allowed)).as_py() is not False)


def _rfc3339(column: pa.ChunkedArray) -> bool:
    return bool(pc.all(pc.match_substring_regex(column, _RFC3339)).as_py() is not False)


def _no_other_bounds(kind: Any) -> None:
    if kind.gt is not None or kind.lt is not None or kind.multiple_of is not None:
        raise TypeError(f"the usage fast path does not check {kind}")


def _plan(kind: Any) -> tuple[bool, list[Check]]:
    """Whether the field may be null, and the checks its values pass."""
    if isinstance(kind, mi.UnionType):
        others = [k for k in kind.types if not isinstance(k, mi.NoneType)]
        if len(others) != 1:
            raise TypeError(f"the usage fast path does not check {kind}")
        return True, _plan(others[0])[1]
    if isinstance(kind, mi.StrType):
        if kind.pattern is not None:
            raise TypeError(f"the usage fast path does not check patterns ({kind})")
        return False, [_lengths(kind.min_length or 0, kind.max_length)]
    if isinstance(kind, mi.IntType | mi.FloatType):
        _no_other_bounds(kind)
        # Arrow reads NaN and infinity, which are not JSON and which msgspec refuses.
        return False, [_within(kind.ge, kind.le, finite=isinstance(kind, mi.FloatType))]
    if isinstance(kind, mi.LiteralType):
        return False, [_among(kind.values)]
    if isinstance(kind, mi.DateTimeType) and kind.tz is True:
        return False, [_rfc3339]
    raise TypeError(f"the usage fast path does not check {kind}")


_FIELDS: Final = {
    field.name: field
    for field in mi.type_info(NulFreeUsage).fields  # type: ignore[attr-defined]
}
if set(_FIELDS) != {attribute for _, attribute, _ in USAGE_FIELDS}:
    raise TypeError("the usage table's columns are not the usage event's fields")


def _absent(attribute: str, kind: pa.DataType) -> tuple[bytes, pa.Scalar | None]:
    """The field's key as JSON spells it, and what msgspec makes of the field where a record
    has none (None: the field is required)."""
    default = _FIELDS[attribute].default
    filled = None if default is msgspec.NODEFAULT else pa.scalar(default, type=kind)
    return f'"{attribute}"'.encode(), filled


# (column, field, may be null, checks, (key, default)), in the table's order.
_COLUMNS: Final = tuple(
    (column, attribute, *_plan(_FIELDS[attribute].type), _absent(attribute, kind))
    for column, attribute, kind in USAGE_FIELDS
)
# As read: a time as its text (checked, then converted); every other field as stored.
_READ_AS: Final = pa.schema(
    [(attribute, pa.string() if kind == TIMESTAMP else kind) for _, attribute, kind in USAGE_FIELDS]
)
_first_byte: Final = itemgetter(0)
_OPENING_BRACE: Final = {ord("{")}
_PARSE: Final = pj.ParseOptions(explicit_schema=_READ_AS, unexpected_field_behavior="ignore")
_READ: Final = pj.ReadOptions(use_threads=True)
_EARLIEST_US: Final = int(EARLIEST_TIME.timestamp() * 1_000_000)
_LATEST_US: Final = int(LATEST_TIME.timestamp() * 1_000_000)


def _within_time_bounds(times: pa.ChunkedArray) -> bool:
    """The wire type's ``__post_init__`` bound (``check_time``), which its schema does not
    show: Arrow reads a time at the calendar's edge (year 10000 once in UTC) without a word."""
    span = pc.min_max(times)
    low = span["min"].cast(pa.int64()).as_py()
    high = span["max"].cast(pa.int64()).as_py()
    return low is None or (low >= _EARLIEST_US and high < _LATEST_US)


def usage_table_from_json(values: Sequence[bytes | None]) -> pa.Table | None:
    """The records as a usage table (``usage_table.py``: the same columns and ``batch_row``),
    or ``None`` when they must be decoded by msgspec (see the module's docstring)."""
    if None in values:
        return None
    records = cast("Sequence[bytes]", values)
    try:
        # The first bytes as a set: a third of the time of a startswith on each record.
        if set(map(_first_byte, records)) != _OPENING_BRACE:
            return None
    except IndexError:  # an empty record
        return None
    joined = b"\n".join(records)
    if b"\\" in joined:
        return None
    try:
        read = pj.read_json(pa.BufferReader(joined), read_options=_READ, parse_options=_PARSE)
        read.validate(full=True)  # the reader takes any bytes in a string; this checks UTF-8
    except pa.ArrowInvalid:
        return None
    if read.num_rows != len(records):
        return None
    columns: list[pa.ChunkedArray] = []
    for _, attribute, nullable, checks, (key, default) in _COLUMNS:
        column = read.column(attribute)
        if column.null_count and not nullable:
            # A null is a record without the field, or one saying null: no record names the
            # field (an older producer's batch), so each null is the field's default.
            if default is None or key in joined:
                return None
            column = column.fill_null(default)
        if not all(check(column) for check in checks):
            return None
        columns.append(column)
    position = USAGE_SCHEMA.get_field_index("ts")
    try:
        times = columns[position].cast(TIMESTAMP)
    except pa.ArrowInvalid:
        return None
    if not _within_time_bounds(times):
        return None
    columns[position] = times
    columns.append(pa.chunked_array([row_numbers(len(records))]))
    return pa.Table.from_arrays(columns, schema=USAGE_SCHEMA)
