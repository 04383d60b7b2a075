"""A batch of usage records from Kafka decoded in one pass must give exactly what decoding each
record alone gives; a batch holding any record that one pass cannot take (empty, what may be a
NUL escape, invalid) gives ``None``, so that the consumer decodes it record by record and
dead-letters each refusal with its own reason (over a real broker in test_kafka_ingest.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from services.analytics.decoding import decode_usage, decode_usage_records
from tests.analytics.conftest import known_events, usage_event

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
GOOD = [msgspec.json.encode(event) for event in known_events(NOW, count=50, runs=0)[0]]


def test_a_batch_in_one_pass_is_each_record_decoded_alone() -> None:
    records = [
        *GOOD,
        b'{"event_id": "spaced", "timestamp": "2026-12-02T09:00:00+01:00",\n "service": "s",'
        b' "provider": "p", "model": "m", "status": "ok", "extra": [1, 2]}',
    ]

    batch = decode_usage_records(records)

    assert batch is not None
    assert msgspec.to_builtins(batch) == msgspec.to_builtins([decode_usage(r) for r in records])


BAD = {
    "an empty record": None,
    "a NUL in a name": msgspec.json.encode(usage_event(NOW, model="m\u0000")),
    "a backslash before u0000 (no NUL, but read by the strict types)": msgspec.json.encode(
        usage_event(NOW, error="\\u0000")
    ),
    "not JSON": b"{not json",
    "a negative count": msgspec.json.encode(usage_event(NOW, prompt_tokens=-1)),
    "two events in one record": GOOD[0] + b"," + GOOD[1],
}


@pytest.mark.parametrize("record", BAD.values(), ids=BAD.keys())
def test_one_record_the_pass_cannot_take_sends_the_batch_record_by_record(
    record: bytes | None,
) -> None:
    assert decode_usage_records([*GOOD[:10], record, *GOOD[10:]]) is None
