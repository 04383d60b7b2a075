"""Records aiokafka cannot read back: a header name that is not UTF-8.

Kafka's protocol gives a header name as a string, but a broker stores a record batch as the
producer wrote it, so another client (librdkafka, a Java producer given raw bytes, a broken
proxy) can write any bytes there; aiokafka's reader then raises ``UnicodeDecodeError`` while it
builds the batch's records. aiokafka's producer encodes every name as UTF-8, so these helpers
write one batch with aiokafka's pure-Python batch builder (which encodes a name by calling its
``encode``) and names that encode to the bytes asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy


class RawName(str):
    """A header name written as ``raw`` bytes, whatever they are."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


@dataclass(frozen=True)
class RawRecord:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Each header's name as the bytes written."""


async def send_one_batch(
    bootstrap: str, topic: str, partition: int, records: list[RawRecord]
) -> None:
    """``records`` in one batch of ``partition``, in order, their header names as given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        # The C builder aiokafka uses takes only str names and encodes them itself.
        batch._builder = _DefaultRecordBatchBuilderPy(
            2,
            0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=0,
            batch_size=1 << 20,
        )
        for record in records:
            headers = [(RawName(name), value) for name, value in record.headers]
            appended = batch.append(
                timestamp=None, key=record.key, value=record.value, headers=headers
            )
            assert appended is not None, "the batch is full"
        sent = await producer.send_batch(batch, topic, partition=partition)
        await sent
    finally:
        await producer.stop()
