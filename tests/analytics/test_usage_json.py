"""Usage records read by Arrow's JSON reader (``services/analytics/usage_json.py``) must give
exactly the usage table that msgspec's decoding gives, or nothing (``None``: the consumer then
decodes the batch with msgspec, which names each refusal and dead-letters it).

Each case below is a batch of valid records with one record put in the middle. Where msgspec
refuses that record, the fast path must refuse the batch; where the fast path takes a batch,
its table must equal msgspec's, value for value. Valid batches must take the fast path, or it
would be dead code that these comparisons could not catch. Either store takes such a table and
stores what it would have stored from the events."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pyarrow as pa
import pytest

from services.analytics.decoding import decode_usage_records
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import TimeWindow, store_for
from services.analytics.usage_json import usage_table_from_json
from services.analytics.usage_table import concat_usage, usage_events, usage_table
from tests.analytics.conftest import known_events, usage_event

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
GOOD = [json.dumps(event).encode() for event in known_events(NOW, count=60, runs=0)[0]]


def slow_path(records: list[bytes | None]) -> pa.Table | None:
    """What the consumer stored before the fast path: msgspec's structs as a usage table."""
    events = decode_usage_records(records)
    return None if events is None else usage_table(events)


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()  # no escapes: the fast path's input


def record(**fields: Any) -> bytes:
    return encode(usage_event(NOW, **fields))


def spelled(field: str, raw: str) -> bytes:
    """A valid record whose ``field`` (added if new) is the raw JSON ``raw``."""
    return record(**{field: "@@"}).replace(b'"@@"', raw.encode())


def without(field: str) -> bytes:
    event = usage_event(NOW)
    del event[field]
    return encode(event)


TAKEN_BY_BOTH = {
    "an offset other than UTC": record(timestamp="2026-12-02T09:30:00.5+01:30"),
    "a negative offset": record(timestamp="2026-12-01T23:59:59.999999-05:00"),
    "no fraction, Z": record(timestamp="2026-12-02T08:00:00Z"),
    "the earliest time": record(timestamp="1970-01-01T00:00:00Z"),
    "the latest time": record(timestamp="2199-12-31T23:59:59.999999Z"),
    "every optional field": record(
        request_id="r" * 256,
        capability="c",
        workflow_id="w",
        run_id="x",
        error="e" * 2000,
        desk="rates-desk",
        cached_tokens=7,
        cache_write_tokens=3,
    ),
    "names at their length in characters, each of two bytes": record(
        event_id="é" * 128, service="ü" * 256
    ),
    "floats of every size": record(latency_ms=5e-324, cost_usd=99_999_999.0),
    "integers read as floats": record(latency_ms=7, cost_usd=0),
    "negative zero": record(latency_ms=-0.0),
    "the largest counts": record(prompt_tokens=2**31 - 1, completion_tokens=0),
    "fields nobody knows, nested": spelled("extra", '{"deep": [1, {"x": null}]}, "more": true'),
    "optional fields null": record(request_id=None, error=None, run_id=None),
    "line breaks inside the record": GOOD[0].replace(b", ", b",\n"),
    **{
        f"a float hard to round ({raw})": spelled("latency_ms", raw)
        for raw in (
            "0.30000000000000004",
            "2.2250738585072011e-308",
            "0.1000000000000000055511151231257827",
            "1.00000000000000011102230246251565404236316680908203125",
            "123456789012345678901234567890e-25",
            "1E5",
        )
    },
    "tabs and carriage returns between fields": GOOD[0]
    .replace(b", ", b",\t")
    .replace(b": ", b":\r"),
    "invalid UTF-8 in a field nobody reads": spelled("extra", '"x"').replace(b'"x"', b'"\xff"'),
    "whitespace around fields": b'{ "event_id" : "w" , "timestamp":"2026-12-02T08:00:00Z",'
    b'"service":"s","provider":"p","model":"m","status":"error","prompt_tokens":0,'
    b'"completion_tokens":0,"latency_ms":0,"cost_usd":0,"cached_tokens":0,'
    b'"cache_write_tokens":0 }\r',
}

REFUSED_BY_MSGSPEC = {
    "NaN": spelled("latency_ms", "NaN"),
    "infinity": spelled("cost_usd", "Infinity"),
    "a count with a fraction of zero": spelled("prompt_tokens", "1.0"),
    "a count as text": spelled("prompt_tokens", '"5"'),
    "a count as a boolean": spelled("prompt_tokens", "true"),
    "a count past 32 bits": record(prompt_tokens=2**31),
    "a negative count": record(completion_tokens=-1),
    "a cost past its bound": record(cost_usd=1e8),
    "a latency past a year": record(latency_ms=1e12),
    "a name as a number": spelled("model", "5"),
    "an empty event id": record(event_id=""),
    "an event id one character too long": record(event_id="é" * 129),
    "an error one character too long": record(error="e" * 2001),
    "a desk one character too long": record(desk="d" * 257),
    "negative cached tokens": record(cached_tokens=-1),
    "cache writes past 32 bits": record(cache_write_tokens=2**31),
    "an unknown status": record(status="maybe"),
    "a required field missing": without("model"),
    "a required field null": record(model=None),
    "a defaulted field null": record(prompt_tokens=None),
    "a time without an offset": record(timestamp="2026-12-02T08:00:00"),
    "a 30th of February": record(timestamp="2026-02-30T08:00:00Z"),
    "a 61st minute": record(timestamp="2026-12-02T08:61:00Z"),
    "an offset of 24 hours": record(timestamp="2026-12-02T08:00:00+24:00"),
    "a date alone": record(timestamp="2026-12-02"),
    "a time past the calendar's end once in UTC": record(timestamp="9999-12-31T23:30:00-01:00"),
    "a time before the calendar's start once in UTC": record(timestamp="0001-01-01T00:30:00+01:00"),
    "a time before 1970": record(timestamp="1969-12-31T23:59:59Z"),
    "a time from 2200 on": record(timestamp="2200-01-01T00:00:00Z"),
    "not JSON": b"{not json",
    "trailing garbage": GOOD[0] + b" x",
    "two events in one record": GOOD[0] + GOOD[1],
    "an array": b"[1, 2]",
    "no record": None,
    "an empty record": b"",
    "a NUL escape": record(error="\u0000"),
    **{
        f"invalid UTF-8 ({bad!r})": record(model="m").replace(b'"m"', b'"m' + bad + b'"')
        for bad in (b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82")
    },
}

LEFT_TO_MSGSPEC = {
    # Taken by msgspec, but not provably read alike by Arrow: decoded by msgspec.
    "a missing field with a default": without("prompt_tokens"),
    "a field with a default missing where other records name it": without("cached_tokens"),
    "an escaped quote": record(error='said "no"'),
    "a key given twice": spelled("model", '"m", "model": "m2"'),
    "nine digits of a second": record(timestamp="2026-12-02T08:00:00.123456789Z"),
    "space before the record": b" " + GOOD[0],
}


def test_valid_batches_take_the_fast_path_and_read_as_msgspec_reads_them() -> None:
    rng = random.Random(3)
    floats = [
        record(latency_ms=rng.uniform(0, 1e6), cost_usd=rng.uniform(0, 1)) for _ in range(500)
    ]
    for records in (GOOD, floats, [*GOOD, *TAKEN_BY_BOTH.values()]):
        fast = usage_table_from_json(records)
        slow = slow_path(list(records))
        assert fast is not None
        assert slow is not None
        assert fast.equals(slow)


def test_a_batch_of_an_older_producer_without_a_newer_field_takes_the_fast_path() -> None:
    """A producer from before a field with a default (``cached_tokens``) names it in no
    record: each reads as the default, as msgspec fills it."""
    records = [
        encode({k: v for k, v in json.loads(good).items() if k != "cached_tokens"}) for good in GOOD
    ]
    fast = usage_table_from_json(records)
    assert fast is not None
    assert fast.equals(slow_path(list(records)))
    assert fast.column("cached_tokens").to_pylist() == [0] * len(records)
    # A record saying null is refused by msgspec, and so left to it.
    said_null = [*records[:30], records[30].replace(b"}", b', "cached_tokens": null}')]
    assert slow_path(list(said_null)) is None
    assert usage_table_from_json(said_null) is None


@pytest.mark.parametrize("added", TAKEN_BY_BOTH.values(), ids=TAKEN_BY_BOTH.keys())
def test_a_valid_record_of_any_shape_reads_alike(added: bytes) -> None:
    records = [*GOOD[:30], added, *GOOD[30:]]
    fast = usage_table_from_json(records)
    assert fast is not None
    assert fast.equals(slow_path(list(records)))


@pytest.mark.parametrize("added", REFUSED_BY_MSGSPEC.values(), ids=REFUSED_BY_MSGSPEC.keys())
def test_a_batch_with_a_record_msgspec_refuses_is_left_to_msgspec(added: bytes | None) -> None:
    records = [*GOOD[:30], added, *GOOD[30:]]
    assert slow_path(records) is None  # the case is what it says
    assert usage_table_from_json(records) is None


@pytest.mark.parametrize("added", LEFT_TO_MSGSPEC.values(), ids=LEFT_TO_MSGSPEC.keys())
def test_what_cannot_be_shown_alike_is_left_to_msgspec(added: bytes) -> None:
    records = [*GOOD[:30], added, *GOOD[30:]]
    assert usage_table_from_json(records) is None


def test_records_over_many_lines_past_a_block_of_the_reader_are_never_read_amiss() -> None:
    """The reader cuts its input into blocks at line ends; a record cut in two must not parse
    (msgspec reads the batch then), whatever else happens."""
    events = known_events(NOW, count=6000, runs=0)[0]
    records = [json.dumps(event, indent=1).encode() for event in events]  # over 1 MiB
    slow = slow_path(list(records))
    assert slow is not None
    fast = usage_table_from_json(records)
    assert fast is None or fast.equals(slow)


def test_tables_of_several_partitions_count_their_rows_as_one() -> None:
    whole, first, second, most = (
        usage_table_from_json(part) for part in (GOOD, GOOD[:20], GOOD[20:], GOOD[:40])
    )
    rest = decode_usage_records(GOOD[40:])
    assert whole is not None
    assert first is not None
    assert second is not None
    assert most is not None
    assert rest is not None
    for joined in (concat_usage([first, second]), concat_usage([most, usage_table(rest)])):
        assert joined.combine_chunks().equals(whole.combine_chunks())


def test_a_table_reads_back_as_the_events_it_was_read_from() -> None:
    table = usage_table_from_json(GOOD)
    assert table is not None
    expected = decode_usage_records(GOOD)
    assert msgspec.to_builtins(usage_events(table)) == msgspec.to_builtins(expected)


async def test_either_store_stores_a_table_as_it_stores_its_events(
    collector_settings: AnalyticsSettings,
) -> None:
    records = [*GOOD, GOOD[0]]  # one copy, stored once
    table = usage_table_from_json(records)
    events = decode_usage_records(records)
    assert table is not None
    assert events is not None
    store = store_for(collector_settings)
    await store.open()
    try:
        new = await store.insert_usage(table)
        again = await store.insert_usage(events)  # the same keys: nothing new
        window = TimeWindow(start=NOW - timedelta(days=1), end=NOW + timedelta(days=1))
        exported = b"".join([chunk async for chunk in store.export("usage", "json", window, 100)])
    finally:
        await store.close()

    assert new.num_rows == len(GOOD)
    assert again.num_rows == 0
    stored = sorted(
        (row["event_id"], row["prompt_tokens"], row["model"], row["workflow_id"])
        for row in map(json.loads, exported.splitlines())
    )
    sent = sorted(
        (e["event_id"], e["prompt_tokens"], e["model"], e["workflow_id"])
        for e in map(json.loads, GOOD)
    )
    assert stored == sent
