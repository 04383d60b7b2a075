"""What every PAS consumer does the same way: track its assignment, send with the broker's
acknowledgement, turn a record it cannot use into a dead letter, and start again when the broker
drops it.

What a consumer that commits an offset only after one of these returned can count on:

- ``send_acknowledged`` returns once the broker acknowledged the record. It retries only what
  may succeed on a later try (an aiokafka error marked ``retriable``: a leader moving, the broker
  away, a topic not there yet; and the producer's own delivery timeout), with exponential
  backoff, for ``deadline_s`` in all (``PUBLISH_DEADLINE_S``, 30 s, unless the caller says);
  anything else (a record larger than the producer or the broker takes, a value it cannot
  serialize) fails at the first try. Both end in ``PublishFailed``. A send given up at the
  deadline may still reach the broker later: at least once.
- ``dead_letter`` builds an envelope that always fits the broker's default limit (1 MiB) and is
  never refused for its size: the first ``DEAD_LETTER_ORIGINAL_BYTES`` (64 KiB) of the original
  as text, with ``original_clipped`` set when that is not all of it, the original's full size in
  bytes and its sha256; the error, the key and the headers are clipped too (``key_clipped``,
  ``headers_clipped``). What is not text (a key, an original or a header value that is not
  UTF-8, a header name given twice, a tombstone) is kept exactly beside its text
  (:class:`DeadLetter`), so that the record can be sent again byte for byte.
- What no topic takes goes to the spill file (``spill.py``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerClosed
from aiokafka.structs import RecordMetadata

from libs.common.errors import PASError
from libs.common.retries import retried
from libs.common.schemas.documents import DeadLetter

logger = structlog.get_logger("pas.kafka")

Settle = Callable[[set[TopicPartition]], Awaitable[None]]

PUBLISH_DEADLINE_S = 30.0
"""How long ``send_acknowledged`` keeps trying a record the broker may take later."""

DEAD_LETTER_ORIGINAL_BYTES = 64 * 1024
"""How much of the original a dead letter carries; the rest is known by size and sha256."""


# Everything else a dead letter carries is bounded too, so that an envelope stays far below
# 1 MiB even if every character needed a six-byte JSON escape.
_ERROR_CHARS = 2000
_KEY_BYTES = 1024
_HEADER_NAME_CHARS = 256
_HEADER_VALUE_BYTES = 1024
_HEADERS = 32


class PublishFailed(PASError):
    """The broker did not acknowledge a record: it refused it, or did not take it before the
    deadline. Dead-letter the record, or spill it, before committing past it."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"{topic}: {reason}")
        self.topic = topic
        self.reason = reason


class TrackAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps ``assigned`` current. Before partitions move to another consumer, ``settle``
    (when given) finishes their in-flight work and commits it."""

    def __init__(
        self,
        assigned: set[TopicPartition],
        settle: Settle | None = None,
        *,
        placed: Callable[[set[TopicPartition]], None] | None = None,
    ) -> None:
        """``placed``: told of partitions as they are assigned."""
        self._assigned = assigned
        self._settle = settle
        self._placed = placed

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._settle is not None:
            await self._settle(set(revoked))
        self._assigned.difference_update(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned.update(assigned)
        if self._placed is not None:
            self._placed(set(assigned))
        logger.info(
            "partitions assigned",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
        )


async def track_topics(producer: AIOKafkaProducer, topics: Iterable[str]) -> None:
    """Have a started ``producer`` fetch metadata for ``topics`` at every refresh.

    Once aiokafka tracks any topic, it refreshes metadata for the tracked ones only, and it
    tracks a topic only when a send finds no metadata for it (one created after the producer
    started, or one that cannot exist). That first send drops every untracked topic's metadata,
    and a batch already queued for one of them then waits without a leader until the
    producer's request timeout. Tracking the topics a consumer publishes to from the start
    leaves nothing untracked. Call it right after ``start()``: it replaces what is tracked."""
    await producer.client.set_topics(list(topics))


def retriable(exc: Exception) -> bool:
    """Whether the broker may take the record on a later try: aiokafka marks those errors
    ``retriable``; its ``KafkaTimeoutError`` (a batch not delivered within the producer's
    request timeout, the broker away) is transient too. A record too large, a value that
    cannot be serialized or a closed producer are not."""
    return isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)


PRODUCER_STOP_S = 5.0


async def stop_producer(producer: AIOKafkaProducer, within_s: float = PRODUCER_STOP_S) -> None:
    """Stop ``producer`` within ``within_s``. Stopping flushes what it holds, and a record
    aiokafka still retries (a broker gone, a topic it refuses) would hold the caller for the
    whole delivery timeout: a command after Ctrl-C, a service past its grace period. What was
    acknowledged is known by then (every PAS caller commits or reports only that); the rest
    is not waited for."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(producer.stop(), within_s)


async def send_acknowledged(
    producer: AIOKafkaProducer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    *,
    deadline_s: float = PUBLISH_DEADLINE_S,
    since: float | None = None,
) -> RecordMetadata:
    """Send and wait until the broker acknowledges, retrying what is retriable for at most
    ``deadline_s``: a caller commits its input only after this returns, so nothing is lost in
    between. Raises ``PublishFailed`` (``ProducerClosed`` as it is: the caller stopped).
    ``since``: the ``time.monotonic()`` the deadline counts from, when the record was handed
    over earlier (a batch that failed: ``libs/common/kafka/publisher.py``); else now. A
    ``value`` of ``None`` is a tombstone; a header's ``None``, a header without a value."""
    last: Exception | None = None
    remaining_s = deadline_s if since is None else since + deadline_s - time.monotonic()

    async def attempt() -> RecordMetadata:
        nonlocal last
        try:
            sent = await producer.send(topic, key=key, value=value, headers=headers)
            # Shielded: the deadline abandons the wait, not aiokafka's own future.
            return await asyncio.shield(sent)
        except Exception as exc:
            last = exc
            raise

    try:
        async with asyncio.timeout(remaining_s):
            return await retried(
                attempt,
                on=retriable,
                attempts=None,
                give_up_after_s=remaining_s,
                wait_initial=0.1,
                wait_max=2.0,
                wait_jitter=0.1,
            )
    except TimeoutError as exc:
        why = f"; last {type(last).__name__}: {last}" if last is not None else ""
        raise PublishFailed(topic, f"not acknowledged within {deadline_s:g} s{why}") from exc
    except ProducerClosed:
        raise
    except Exception as exc:
        raise PublishFailed(topic, f"{type(exc).__name__}: {exc}") from exc


def _text_and_exact(data: bytes, limit: int) -> tuple[str, bytes | None]:
    """The first ``limit`` bytes of ``data`` as text (a character cut in half at the end is
    left out), and those bytes themselves when they are not UTF-8 (text cannot carry them),
    else ``None``. One strict decode: the replacing one only for what is not UTF-8."""
    kept = data[:limit]
    final = len(data) <= limit
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(kept, final=final), None
    except UnicodeDecodeError:
        text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(kept, final=final)
        return text, kept


def _text_headers(
    headers: list[tuple[str, bytes | None]],
) -> tuple[dict[str, str], list[tuple[str, bytes | None]] | None]:
    """The (clipped) headers as text; and themselves too when a ``dict[str, str]`` cannot say
    them (a value not UTF-8 or null, or a name given more than once), else ``None``."""
    kept = [
        (name[:_HEADER_NAME_CHARS], None if value is None else value[:_HEADER_VALUE_BYTES])
        for name, value in headers[:_HEADERS]
    ]
    text: dict[str, str] = {}
    binary = False
    for name, value in headers[:_HEADERS]:
        said, exact = _text_and_exact(value or b"", _HEADER_VALUE_BYTES)
        text[name[:_HEADER_NAME_CHARS]] = said
        binary = binary or value is None or exact is not None
    repeated = len(text) < len(kept)
    return text, kept if repeated or binary else None


def _headers_clipped(headers: list[tuple[str, bytes | None]]) -> bool:
    return len(headers) > _HEADERS or any(
        len(name) > _HEADER_NAME_CHARS or len(value or b"") > _HEADER_VALUE_BYTES
        for name, value in headers
    )


def dead_letter(
    record: ConsumerRecord[bytes, bytes],
    *,
    error: str,
    error_type: str,
    attempts: int,
    keep_bytes: int = DEAD_LETTER_ORIGINAL_BYTES,
    original_known: bool = True,
) -> DeadLetter:
    """The DLQ envelope of ``record``: the original (its first ``keep_bytes`` as text, exactly
    too when that is not UTF-8, its size and sha256), its key and headers, where it came from,
    and why it could not be used.
    ``original_known=False``: nothing of the record could be read (``unreadable.py``), so the
    letter carries an empty original of unknown size and digest, not those of an empty one
    (nor a tombstone's)."""
    original = record.value or b""
    key = record.key
    # aiokafka gives a header without a value (Kafka allows one) as None.
    headers: list[tuple[str, bytes | None]] = list(record.headers)
    # An empty key is a key (it picks a partition), not none.
    key_text, key_exact = (None, None) if key is None else _text_and_exact(key, _KEY_BYTES)
    original_text, original_exact = _text_and_exact(original, keep_bytes)
    header_text, headers_exact = _text_headers(headers)
    letter = DeadLetter(
        error=error[:_ERROR_CHARS],
        error_type=error_type,
        attempts=attempts,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key_text,
        key_base64=key_exact,
        key_clipped=key is not None and len(key) > _KEY_BYTES,
        original=original_text,
        original_base64=original_exact,
        original_bytes=len(original),
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_clipped=len(original) > keep_bytes,
        tombstone=record.value is None and original_known,
        headers=header_text,
        headers_base64=headers_exact,
        headers_clipped=_headers_clipped(headers),
        failed_at=datetime.now(UTC),
    )
    if not original_known:
        letter.original_bytes = letter.original_sha256 = None
    return letter


class ConsumerLoop(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


async def run_until_stopped(loop: ConsumerLoop, stop: asyncio.Event, *, name: str) -> None:
    """Run ``loop`` until ``stop`` is set. If the broker is away or drops it, start it again
    after a pause that doubles up to 15 s, and starts over once a run ends cleanly."""
    delay = 0.5
    while not stop.is_set():
        try:
            await loop.run(stop)
        except Exception:
            logger.exception(f"{name} failed; restarting", retry_in_s=delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 15.0)
        else:
            delay = 0.5
