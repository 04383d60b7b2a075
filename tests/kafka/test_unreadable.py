"""Reading record batches that aiokafka cannot: a header name not UTF-8 comes back as an
unreadable record, whole, and the good records of its batch as they are; a corrupt batch's
offsets come back as unreadable records of which nothing is known."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from libs.common.kafka.rejection import Rejection
from libs.common.kafka.unreadable import CORRUPT_BATCH, HEADER_NAME_NOT_UTF8, read_batches
from tests.support.unreadable_records import RawName

TP = TopicPartition("docs", 0)
GZIP, ZSTD = 1, 4


def _batch(base: int, keys: list[bytes], *, bad: bytes = b"", codec: int = 0) -> bytes:
    """A batch at offset ``base``, one record per key; the one keyed ``bad`` has a header
    name that is not UTF-8, and a header without a value beside an empty one."""
    builder = _DefaultRecordBatchBuilderPy(
        2, codec, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0,
        batch_size=1 << 20,
    )  # fmt: skip
    for delta, key in enumerate(keys):
        headers: list[tuple[str, bytes | None]] = [("id", key)]
        if key == bad:
            headers = [(RawName(b"\xff\xfeid"), key), ("no-value", None), ("empty", b"")]
        builder.append(delta, timestamp=None, key=key, value=b"v-" + key, headers=headers)
    data = bytearray(builder.build())
    data[:8] = base.to_bytes(8, "big")  # the broker sets it; the CRC does not cover it
    return bytes(data)


def _log(codec: int = 0) -> bytes:
    return (
        _batch(0, [b"a"])
        + _batch(1, [b"b", b"bad", b"c"], bad=b"bad", codec=codec)
        + _batch(4, [b"d"])
    )


def _seen(found: list[object]) -> list[tuple[str, int]]:
    return [(type(item).__name__, item.offset) for item in found]  # type: ignore[attr-defined]


@pytest.mark.parametrize("codec", [0, GZIP, ZSTD])
def test_the_unreadable_record_comes_back_whole_with_the_rest_of_its_batch(codec: int) -> None:
    read = read_batches(_log(codec), TP, 0, limit=100)

    assert _seen(read.found) == [
        ("ConsumerRecord", 0),
        ("ConsumerRecord", 1),
        ("Unreadable", 2),
        ("ConsumerRecord", 3),
    ]
    assert read.next_offset == 4  # past its batch: the batch after is aiokafka's to read
    [unreadable] = read.unreadable
    assert unreadable.error_type == HEADER_NAME_NOT_UTF8
    assert unreadable.reason == r"record unreadable: header name not UTF-8 (b'\xff\xfeid')"
    assert unreadable.recovered
    assert (unreadable.record.key, unreadable.record.value) == (b"bad", b"v-bad")
    # A header without a value stays one (a replay sends it so), not an empty value.
    assert unreadable.record.headers == [
        ("\ufffd\ufffdid", b"bad"),
        ("no-value", None),
        ("empty", b""),
    ]


def test_reading_starts_at_the_offset_and_stops_at_the_limit() -> None:
    assert _seen(read_batches(_log(), TP, 2, limit=100).found) == [
        ("Unreadable", 2),
        ("ConsumerRecord", 3),
    ]
    cut = read_batches(_log(), TP, 0, limit=2)
    assert (_seen(cut.found), cut.next_offset) == (
        [("ConsumerRecord", 0), ("ConsumerRecord", 1)],
        2,
    )
    readable = read_batches(_log(), TP, 3, limit=100)
    assert (readable.unreadable, readable.next_offset) == ([], 5)


def test_a_batch_whose_crc_is_wrong_gives_each_offset_as_unknown() -> None:
    log = bytearray(_log())
    log[-3] ^= 0xFF  # in the last batch's one record

    read = read_batches(bytes(log), TP, 4, limit=100)

    [unreadable] = read.unreadable
    assert (unreadable.offset, unreadable.error_type) == (4, CORRUPT_BATCH)
    assert not unreadable.recovered
    assert unreadable.record.value is None
    assert read.next_offset == 5


def test_an_unreadable_records_letter_holds_what_of_it_was_read() -> None:
    """What each consumer sends for an unreadable record (``Rejection.of_unreadable``): one read
    whole is kept as it was; one of a corrupt batch is known by nothing, not as an empty one."""
    [whole] = read_batches(_log(), TP, 2, limit=1).unreadable
    log = bytearray(_log())
    log[-3] ^= 0xFF
    [corrupt] = read_batches(bytes(log), TP, 4, limit=100).unreadable

    read = Rejection.of_unreadable(whole).letter(whole.record, attempts=0)
    unknown = Rejection.of_unreadable(corrupt).letter(corrupt.record, attempts=1)

    assert (read.error_type, read.error, read.attempts) == (HEADER_NAME_NOT_UTF8, whole.reason, 0)
    assert (read.exact_key(), read.exact_original(), read.original_bytes) == (b"bad", b"v-bad", 5)
    assert (unknown.error_type, unknown.error, unknown.attempts) == (
        CORRUPT_BATCH,
        corrupt.reason,
        1,
    )
    assert (unknown.original_bytes, unknown.original_sha256, unknown.tombstone) == (
        None,
        None,
        False,
    )
