"""What ``pas dlq replay`` sent: one receipt a replayed letter, on ``pas-dlq-replays``.

A letter stays on its DLQ after its original is sent again (the DLQ is the audit trail), and
the original's ``x-pas-replay-attempt`` is the same however often the letter is replayed: by
the letter alone, a second ``pas dlq replay --error-type ...`` would send every original the
first one sent, and each would be processed twice. So each replay the broker acknowledged is
recorded here, keyed by the letter's ``dlq/partition/offset``; a letter with a receipt is
replayed again only when asked (``--again``), and ``pas dlq list`` shows its receipts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaProducer

from libs.cli.topic_reader import TopicReader
from libs.common.constants import TOPIC_DLQ_REPLAYS
from libs.common.kafka.records import send_acknowledged
from libs.common.kafka.topics import ensure_topics


class ReplayReceipt(msgspec.Struct, frozen=True, kw_only=True):
    letter: str
    """The letter replayed: ``dlq/partition/offset``."""
    replayed_as: str
    """The record its original became: ``topic/partition/offset``."""
    at: datetime


_decode = msgspec.json.Decoder(ReplayReceipt).decode


def letter_place(dlq: str, partition: int, offset: int) -> str:
    return f"{dlq}/{partition}/{offset}"


async def read_receipts(
    bootstrap_servers: str, dlq: str, *, create: bool = False
) -> dict[str, list[ReplayReceipt]]:
    """The receipts of ``dlq``'s letters, by letter, oldest first; none while the topic is
    missing (a broker that has never seen a replay), which ``create`` makes (a replay, which
    writes there; a listing only reads)."""
    if create:
        await ensure_topics(bootstrap_servers, {TOPIC_DLQ_REPLAYS: 1})
    receipts: dict[str, list[ReplayReceipt]] = defaultdict(list)
    async with TopicReader(bootstrap_servers, [TOPIC_DLQ_REPLAYS], missing_ok=True) as reader:
        for record in await reader.everything() if reader.topics else []:
            try:
                receipt = _decode(record.value or b"")
            except msgspec.DecodeError:
                continue  # not one of ours
            if receipt.letter.startswith(f"{dlq}/"):
                receipts[receipt.letter].append(receipt)
    return dict(receipts)


async def record_receipt(
    producer: AIOKafkaProducer, receipt: ReplayReceipt, *, deadline_s: float
) -> None:
    await send_acknowledged(
        producer,
        TOPIC_DLQ_REPLAYS,
        receipt.letter.encode(),
        msgspec.json.encode(receipt),
        deadline_s=deadline_s,
    )
