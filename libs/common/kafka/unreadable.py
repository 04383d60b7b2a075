"""Records aiokafka cannot build, read from their batch instead, so a consumer can dead-letter
them and go on.

aiokafka builds a fetch's records inside ``getmany``, and decodes each header name as strict
UTF-8 there; a record whose header name is not (Kafka's protocol says string, but a broker
keeps the batch as its producer wrote it) makes ``getmany`` raise ``UnicodeDecodeError``, at
every try, so a consumer that only restarts fails on it for good. What aiokafka leaves behind
after such a failure (aiokafka 0.14, its C record reader):

- The failing partition's position does not move: it stays where that ``getmany`` began
  reading it, even past good records the same call had already built.
- Partitions the same call drained before it *did* move: their records are built and thrown
  away with the exception. A consumer must seek them back to what it last handed on.
- Every record after the bad one in its batch is unreadable too, whatever offset one seeks to:
  aiokafka builds a batch's records from its first before skipping those below the position.

So a partition aiokafka cannot read is fetched once more as raw bytes (one ``Fetch`` request
to its leader, through the consumer's own connection) and its batches are read here, header
names decoded with replacement characters: the bad record comes back whole (``Unreadable``,
with why) and the good records of its batch come back as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import CorruptRecordException, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.util import calc_crc32c, decode_varint

UNREADABLE_ERRORS: tuple[type[Exception], ...] = (UnicodeDecodeError, CorruptRecordException)
"""What ``getmany`` raises on a record it cannot build: a header name not UTF-8 (aiokafka's C
reader), a batch whose CRC or layout is wrong (its Python reader raises this for both)."""

HEADER_NAME_NOT_UTF8 = "header_name_not_utf8"
CORRUPT_BATCH = "corrupt_record_batch"

_PARTITION_FETCH_BYTES = 1_048_576
"""At most this much of a partition per raw fetch; a larger first batch comes whole anyway."""

_RAW_FETCH_WAIT_MS = 500

# Record batch v2 (Kafka's message format since 0.11): the fixed header before its records.
_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
_LENGTH_BEFORE = 12  # baseOffset and batchLength: the rest of the batch is batchLength long
_CRC_COVERS_FROM = 21  # attributes to the end
_COMPRESSION = 0x07
_LOG_APPEND_TIME = 0x08
_CONTROL = 0x20
_DECOMPRESS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


@dataclass(frozen=True, kw_only=True)
class Unreadable:
    """A record aiokafka cannot build: where it is, why, and what of it could be read."""

    record: Record
    """Its coordinates always; its key, value and headers (names with replacement characters)
    when ``recovered``, else none of them."""
    error_type: str
    reason: str
    recovered: bool

    @property
    def offset(self) -> int:
        offset: int = self.record.offset
        return offset

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)


@dataclass(frozen=True)
class ReadPast:
    """What a raw read from a partition's position found, in offset order, and where the
    consumer's position goes next (past everything found)."""

    found: list[Record | Unreadable]
    next_offset: int

    @property
    def unreadable(self) -> list[Unreadable]:
        return [item for item in self.found if isinstance(item, Unreadable)]


async def read_past_unreadable(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, *, limit: int
) -> ReadPast:
    """The records of ``tp`` from ``offset``, at most ``limit``, read from their batches: up
    to and through the first unreadable one and the rest of its batch, where the limit allows
    (what it leaves of that batch is read here again on the next call)."""
    raw = await _fetch_raw(consumer, tp, offset)
    return read_batches(raw, tp, offset, limit=limit)


async def _fetch_raw(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bytes:
    # aiokafka has no public call for a partition's raw bytes; its consumer's client is the
    # connection (and security settings) the consumer already uses.
    client = consumer._client
    leader = client.cluster.leader_for_partition(tp)
    if leader is None or leader == -1:
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(tp)
    request = FetchRequest(
        # Not 0: the embedded Tansu broker then answers at once with no partitions at all;
        # with a minimum of 1 byte a broker answers as soon as it holds anything.
        _RAW_FETCH_WAIT_MS,
        1,
        _PARTITION_FETCH_BYTES,
        0,
        [(tp.topic, [(tp.partition, offset, _PARTITION_FETCH_BYTES)])],
    )
    response = await client.send(leader, request)
    for _topic, partitions in response.topics:
        for partition, error_code, _highwater, *part_data in partitions:
            if partition != tp.partition:
                continue
            if error_code:
                raise for_code(error_code)(f"raw fetch of {tp.topic}/{tp.partition} at {offset}")
            data: bytes = part_data[-1] or b""
            return data
    return b""


def read_batches(data: bytes, tp: TopicPartition, offset: int, *, limit: int) -> ReadPast:
    """The records at and after ``offset`` in ``data`` (a fetch's record batches), see
    ``read_past_unreadable``."""
    found: list[Record | Unreadable] = []
    next_offset = offset
    pos = 0
    while pos + _BATCH_HEADER.size <= len(data) and len(found) < limit:
        batch = _Batch.at(data, pos)
        if batch is None:
            break  # a batch cut short by the fetch's size, or one of the older formats
        pos += len(batch.data)
        if batch.next_offset <= next_offset or batch.control:
            next_offset = max(next_offset, batch.next_offset)
            continue
        found += batch.records(tp, next_offset)
        # Cut at the limit, the position goes just past the last one taken.
        cut = len(found) > limit
        del found[limit:]
        next_offset = found[-1].offset + 1 if cut else batch.next_offset
        if any(isinstance(item, Unreadable) for item in found):
            break
    return ReadPast(found, next_offset)


@dataclass(frozen=True)
class _Batch:
    """A record batch of Kafka's v2 format: its header, and its records read leniently."""

    data: bytes
    base: int
    crc: int
    attributes: int
    last_delta: int
    first_timestamp: int
    max_timestamp: int
    count: int

    @classmethod
    def at(cls, data: bytes, pos: int) -> _Batch | None:
        base, length, _epoch, magic, crc, attributes, last_delta, first, most, *rest = (
            _BATCH_HEADER.unpack_from(data, pos)
        )
        end = pos + _LENGTH_BEFORE + length
        if end > len(data) or magic != 2:
            return None
        return cls(data[pos:end], base, crc, attributes, last_delta, first, most, rest[-1])

    @property
    def next_offset(self) -> int:
        return self.base + self.last_delta + 1

    @property
    def control(self) -> bool:
        return bool(self.attributes & _CONTROL)

    def records(self, tp: TopicPartition, start: int) -> list[Record | Unreadable]:
        """Its records from offset ``start``; what cannot be read is unreadable."""
        if calc_crc32c(self.data[_CRC_COVERS_FROM:]) != self.crc:
            return _unknown(tp, range(max(self.base, start), self.next_offset), "its batch's CRC")
        body = self.data[_BATCH_HEADER.size :]
        codec = self.attributes & _COMPRESSION
        try:
            if codec:
                body = _DECOMPRESS[codec](body)
        except Exception as exc:
            offsets = range(max(self.base, start), self.next_offset)
            return _unknown(tp, offsets, f"its batch's compression ({exc!r})")
        found: list[Record | Unreadable] = []
        pos = 0
        for _ in range(self.count):
            try:
                record, bad_names, pos = self._record(tp, body, pos)
            except (ValueError, IndexError, struct.error) as exc:
                # Where the next record begins is lost: the rest of the batch is unknown.
                after = max(found[-1].offset + 1 if found else self.base, start)
                return found + _unknown(tp, range(after, self.next_offset), f"its layout ({exc})")
            if record.offset < start:
                continue
            if bad_names:
                names = ", ".join(repr(name) for name in bad_names)
                reason = f"record unreadable: header name not UTF-8 ({names})"
                found.append(
                    Unreadable(
                        record=record,
                        error_type=HEADER_NAME_NOT_UTF8,
                        reason=reason,
                        recovered=True,
                    )
                )
            else:
                found.append(record)
        return found

    def _record(self, tp: TopicPartition, body: bytes, pos: int) -> tuple[Record, list[bytes], int]:
        """The record at ``pos`` (Kafka's v2 layout), its header names that are not UTF-8
        (decoded with replacement characters in it), and where the next record begins."""
        length, pos = decode_varint(body, pos)
        end = pos + length
        _attributes, pos = decode_varint(body, pos)
        timestamp_delta, pos = decode_varint(body, pos)
        offset_delta, pos = decode_varint(body, pos)
        key, pos = _nullable(body, pos)
        value, pos = _nullable(body, pos)
        count, pos = decode_varint(body, pos)
        if count < 0:
            raise ValueError(f"{count} headers")
        # A header without a value stays None, as aiokafka gives it: not an empty value.
        headers: list[tuple[str, bytes | None]] = []
        bad_names: list[bytes] = []
        for _ in range(count):
            name, pos = _nullable(body, pos)
            if name is None:
                raise ValueError("a header without a name")
            header_value, pos = _nullable(body, pos)
            try:
                text = name.decode("utf-8")
            except UnicodeDecodeError:
                text = name.decode("utf-8", errors="replace")
                bad_names.append(name)
            headers.append((text, header_value))
        if pos != end:
            raise ValueError(f"a record said to be {length} bytes long is not")
        log_append_time = bool(self.attributes & _LOG_APPEND_TIME)
        record = ConsumerRecord(
            topic=tp.topic,
            partition=tp.partition,
            offset=self.base + offset_delta,
            timestamp=self.max_timestamp
            if log_append_time
            else self.first_timestamp + timestamp_delta,
            timestamp_type=int(log_append_time),
            key=key,
            value=value,
            checksum=None,
            serialized_key_size=-1 if key is None else len(key),
            serialized_value_size=-1 if value is None else len(value),
            headers=headers,
        )
        return record, bad_names, pos


def _nullable(body: bytes, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(body, pos)
    if size < 0:
        return None, pos
    if pos + size > len(body):
        raise ValueError(f"{size} bytes past the record's end")
    return bytes(body[pos : pos + size]), pos + size


def _unknown(tp: TopicPartition, offsets: range, what: str) -> list[Record | Unreadable]:
    """Offsets whose records cannot be read at all: each a letter with nothing of it."""
    return [
        Unreadable(
            record=ConsumerRecord(
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                timestamp=-1,
                timestamp_type=0,
                key=None,
                value=None,
                checksum=None,
                serialized_key_size=-1,
                serialized_value_size=-1,
                headers=[],
            ),
            error_type=CORRUPT_BATCH,
            reason=f"record unreadable: {what} is corrupt; nothing of the record is known",
            recovered=False,
        )
        for offset in offsets
    ]
