"""Publishing and dead letters on a real broker: what may succeed later is tried again until
the deadline, what never can is not, and a dead letter always fits."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError

from libs.common.kafka.broker import EmbeddedBroker
from libs.common.kafka.records import (
    DEAD_LETTER_ORIGINAL_BYTES,
    PublishFailed,
    dead_letter,
    retriable,
    send_acknowledged,
    track_topics,
)
from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.documents import DeadLetter
from tests.kafka.conftest import Retries
from tests.support.processes import free_port

MiB = 1024 * 1024
# No Kafka broker accepts a topic name over 249 characters, nor creates it.
NO_SUCH_TOPIC = "never-" + "x" * 250


def consumed(
    value: bytes | None,
    *,
    key: bytes | None = b"doc-1",
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> ConsumerRecord[bytes, bytes]:
    """A record as a consumer receives it from ``financial-documents``."""
    return ConsumerRecord(
        topic="financial-documents",
        partition=2,
        offset=41,
        timestamp=1_764_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=list(headers),
    )


# -- send_acknowledged -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("producer_options", "key", "value", "cause"),
    [
        pytest.param({}, b"big", b"x" * (2 * MiB), MessageSizeTooLargeError, id="too-large"),
        pytest.param(
            {"key_serializer": str.encode}, b"not-a-str", b"{}", TypeError, id="unserializable"
        ),
    ],
)
async def test_a_record_that_can_never_be_taken_fails_at_the_first_try(
    kafka_bootstrap: str,
    retries: Retries,
    producer_options: dict[str, object],
    key: bytes,
    value: bytes,
    cause: type[Exception],
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **producer_options)
    await producer.start()
    try:
        with pytest.raises(PublishFailed) as raised:
            await send_acknowledged(producer, "records-refused", key, value, deadline_s=30)
    finally:
        await producer.stop()

    assert retries.seen == []
    assert isinstance(raised.value.__cause__, cause)
    assert raised.value.topic == "records-refused"


async def test_a_retriable_error_is_retried_until_the_deadline_then_fails(
    kafka_bootstrap: str, retries: Retries
) -> None:
    # The producer gives up on the topic's metadata after 300 ms: UnknownTopicOrPartitionError.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=300)
    await producer.start()
    try:
        with pytest.raises(PublishFailed) as raised:
            await send_acknowledged(producer, NO_SUCH_TOPIC, b"k", b"v", deadline_s=2)
    finally:
        await producer.stop()

    assert retries.seen, "a retriable error is tried again"
    assert {type(r.caused_by).__name__ for r in retries.seen} == {"UnknownTopicOrPartitionError"}
    assert all(retriable(r.caused_by) for r in retries.seen)
    # Every retry was scheduled inside the deadline, and then it was given up.
    assert all(r.waited_so_far < 2 for r in retries.seen)
    assert raised.value.topic == NO_SUCH_TOPIC
    assert "UnknownTopicOrPartitionError" in str(raised.value)


async def test_a_record_sent_while_the_broker_is_away_is_acknowledged_once_it_is_back(
    tmp_path: Path, retries: Retries
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker.log").start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=1000)
    await producer.start()
    try:
        await send_acknowledged(producer, "comes-back", b"k", b"first")
        broker.stop()
        sending = asyncio.create_task(
            send_acknowledged(producer, "comes-back", b"k", b"second", deadline_s=120)
        )
        await retries.scheduled.wait()  # a try failed while the broker was away
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker-again.log").start()
        acknowledged = await sending
    finally:
        await producer.stop()
        broker.stop()

    assert acknowledged.topic == "comes-back"
    assert retries.seen
    assert all(retriable(r.caused_by) for r in retries.seen)


async def test_a_send_to_a_topic_that_cannot_exist_holds_up_no_other_topic(
    kafka_bootstrap: str, retries: Retries
) -> None:
    """aiokafka drops the metadata of untracked topics when it starts tracking a new one; with
    the destinations tracked, sends queued meanwhile are not left without a leader."""
    topic = f"records-ok-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, {topic: 3})
    # Batched as the processor does: the batch is still queued when the metadata changes.
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, linger_ms=10, request_timeout_ms=1000
    )
    await producer.start()
    try:
        await track_topics(producer, [topic, NO_SUCH_TOPIC])
        doomed = asyncio.create_task(
            send_acknowledged(producer, NO_SUCH_TOPIC, b"k", b"v", deadline_s=3)
        )
        acknowledged = await asyncio.gather(
            *(send_acknowledged(producer, topic, b"k", str(n).encode()) for n in range(3))
        )
        with pytest.raises(PublishFailed):
            await doomed
    finally:
        await producer.stop()

    assert [m.topic for m in acknowledged] == [topic] * 3
    # Only the doomed send was tried again.
    assert {type(r.caused_by).__name__ for r in retries.seen} == {"UnknownTopicOrPartitionError"}


# -- dead_letter -------------------------------------------------------------------------------


def test_a_dead_letter_of_a_small_record_carries_all_of_it() -> None:
    original = '{"doc_id": "d-1", "title": "Résultats"}'.encode()

    letter = dead_letter(consumed(original), error="why", error_type="invalid", attempts=1)

    assert letter.original.encode() == original
    assert letter.original_clipped is False
    assert letter.original_bytes == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()


def test_a_dead_letter_of_a_near_limit_record_keeps_its_start_size_and_hash() -> None:
    # A two-byte character straddles the cut: it is left out rather than half kept.
    original = b"a" * (DEAD_LETTER_ORIGINAL_BYTES - 1) + "é".encode() + b"b" * (MiB - 70_000)

    letter = dead_letter(consumed(original), error="why", error_type="invalid", attempts=1)

    assert letter.original_clipped is True
    assert letter.original == "a" * (DEAD_LETTER_ORIGINAL_BYTES - 1)
    assert letter.original_base64 is None  # text: only its last character was cut
    assert letter.original_bytes == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()


@pytest.mark.parametrize(
    "worst",
    [
        pytest.param(b"\x01" * MiB, id="text JSON must escape"),
        # Not UTF-8: kept twice, as text to read (U+FFFD and escapes) and exactly.
        pytest.param(b"\x01\xff" * (MiB // 2), id="bytes that are not text"),
    ],
)
def test_a_dead_letter_fits_the_broker_limit_whatever_the_record(worst: bytes) -> None:
    """The worst record: 1 MiB of characters JSON must escape, a huge key, many huge headers
    with one name repeated."""
    headers = [(f"h{n % 50}" * 200, worst) for n in range(100)]
    record = consumed(worst, key=worst, headers=headers)

    letter = dead_letter(record, error="\x01" * MiB, error_type="invalid", attempts=1)
    encoded = msgspec.json.encode(letter)

    assert len(encoded) < 0.9 * MiB
    assert msgspec.json.decode(encoded, type=DeadLetter).original_bytes == MiB
    assert (letter.original_clipped, letter.key_clipped, letter.headers_clipped) == (
        True,
        True,
        True,
    )


def test_a_dead_letter_keeps_an_original_that_is_not_utf8_exactly() -> None:
    """A Latin-1 document: its text reads with U+FFFD, its bytes are kept as they were."""
    original = '{"doc_id": "d-1", "title": "Résultats"}'.encode("latin-1")

    letter = dead_letter(consumed(original), error="why", error_type="invalid", attempts=1)
    found = msgspec.json.decode(msgspec.json.encode(letter), type=DeadLetter)

    assert found.original == '{"doc_id": "d-1", "title": "R\ufffdsultats"}'
    assert found.original_base64 == original
    assert found.exact_original() == original
    assert hashlib.sha256(original).hexdigest() == found.original_sha256
    assert found.original_clipped is False


def test_a_dead_letter_keeps_a_binary_key_and_headers_exactly() -> None:
    """Header values that are not text, a name given twice, a header without a value."""
    headers = [("trace", b"\xff\x00\x01"), ("tag", b"a"), ("tag", b"b"), ("empty", None)]
    record = consumed(b"{}", key=b"\xff\xfedoc", headers=headers)

    letter = dead_letter(record, error="why", error_type="invalid", attempts=1)
    found = msgspec.json.decode(msgspec.json.encode(letter), type=DeadLetter)

    assert found.exact_key() == b"\xff\xfedoc"
    assert found.key == "\ufffd\ufffddoc"  # as before, for readers of text
    assert found.exact_headers() == headers
    assert found.headers == {"trace": "\ufffd\x00\x01", "tag": "b", "empty": ""}
    assert (found.key_clipped, found.headers_clipped, found.tombstone) == (False, False, False)


def test_a_dead_letter_of_text_writes_no_exact_copies() -> None:
    record = consumed(b"{}", key=b"", headers=[("source", "café".encode())])

    letter = dead_letter(record, error="why", error_type="invalid", attempts=1)

    assert (letter.original_base64, letter.key_base64, letter.headers_base64) == (None, None, None)
    # An empty key is a key (it picks the partition), not none.
    assert letter.key == ""
    assert letter.exact_key() == b""
    assert letter.exact_headers() == [("source", "café".encode())]


def test_a_dead_letter_says_when_its_key_or_headers_were_clipped() -> None:
    long_key = b"k" * 2000
    record = consumed(b"{}", key=long_key, headers=[("h", b"v" * 2000)])

    letter = dead_letter(record, error="why", error_type="invalid", attempts=1)

    assert letter.key_clipped is True
    assert letter.key == "k" * 1024
    assert letter.headers_clipped is True
    assert letter.original_clipped is False


def test_a_dead_letter_of_a_tombstone_says_it_had_no_value() -> None:
    letter = dead_letter(consumed(None), error="why", error_type="tombstone", attempts=0)
    found = msgspec.json.decode(msgspec.json.encode(letter), type=DeadLetter)

    assert found.tombstone is True
    assert found.exact_original() is None
    assert (found.original, found.original_bytes) == ("", 0)


def test_a_dead_letter_written_before_sizes_were_recorded_still_reads() -> None:
    older = {
        "error": "why",
        "error_type": "invalid_document",
        "attempts": 0,
        "topic": "financial-documents",
        "partition": 0,
        "offset": 3,
        "key": "d-1",
        "original": "{not json",
        "headers": {},
        "failed_at": "2026-11-01T10:00:00Z",
    }

    letter = msgspec.json.decode(json.dumps(older), type=DeadLetter)

    assert (letter.original, letter.original_bytes, letter.original_sha256) == (
        "{not json",
        None,
        None,
    )
    assert letter.original_clipped is False
    # Read exactly as it was written: its text is its bytes.
    assert letter.exact_original() == b"{not json"
    assert letter.exact_key() == b"d-1"
    assert letter.exact_headers() == []
    assert letter.tombstone is False


def test_a_dead_letter_of_a_record_nothing_of_which_was_read_is_no_tombstone() -> None:
    """A record of a corrupt batch (unreadable.py) comes without a value: unknown, not none."""
    letter = dead_letter(
        consumed(None, key=None),
        error="corrupt",
        error_type="corrupt_record_batch",
        attempts=0,
        original_known=False,
    )

    assert letter.tombstone is False
    assert (letter.original_bytes, letter.original_sha256) == (None, None)
