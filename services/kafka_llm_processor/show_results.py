"""Show results: ``python -m services.kafka_llm_processor.show_results [--expect N] [--dlq]``.

A record it cannot show (one no Kafka client can build, or not a result) is named with its
coordinates and passed over."""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from libs.common.constants import KAFKA_FETCH_MAX_WAIT_MS
from libs.common.kafka.fetching import Fetched, Fetcher
from libs.common.kafka.records import TrackAssignment
from libs.common.kafka.unreadable import Unreadable
from libs.common.schemas.documents import DeadLetter, DocumentResult
from libs.common.settings import load_settings_or_exit
from services.kafka_llm_processor.settings import ProcessorSettings


def describe(result: DocumentResult) -> str:
    if result.key_figures is not None:
        detail = "; ".join(f"{f.name}: {f.value}" for f in result.key_figures)
    elif result.sentiment is not None:
        detail = f"{result.sentiment.label} ({result.sentiment.reason})"
    else:
        detail = " ".join(result.answer.split())
    line = (
        f"{result.doc_id}  [{result.task}, {result.status}, {result.processing_ms:.0f} ms, "
        f"{result.prompt_tokens}+{result.completion_tokens} tokens, "
        f"attempts {result.attempts}]\n    {detail[:300]}"
    )
    if result.status == "ungrounded":
        # Never to be read as a fact: say so before the figures, and which ones.
        unfounded = "; ".join(result.ungrounded)[:300]
        line = f"UNGROUNDED {line}\n    not in the document: {unfounded}"
    return line


class Shown(msgspec.Struct):
    messages: int = 0
    ungrounded: int = 0
    unreadable: int = 0
    """Records named and passed over: ones no Kafka client can build (a header name not
    UTF-8, a corrupt batch), and ones that are not a result (or a letter) at all."""


def _in_order(fetched: Fetched) -> list[ConsumerRecord[bytes, bytes] | Unreadable]:
    """A fetch's records, readable or not, by partition and offset: as the topic holds them."""
    items: list[ConsumerRecord[bytes, bytes] | Unreadable] = [
        record for records in fetched.records.values() for record in records
    ]
    items += fetched.unreadable
    return sorted(items, key=_coordinates)


def _coordinates(item: ConsumerRecord[bytes, bytes] | Unreadable) -> tuple[int, int]:
    record = item.record if isinstance(item, Unreadable) else item
    return record.partition, record.offset


def _described(value: bytes | None, *, dlq: bool) -> tuple[str, bool]:
    """The line a record is shown as, and whether it is an ungrounded result; a
    ``msgspec.DecodeError`` for a record that is not what the topic holds."""
    if dlq:
        letter = msgspec.json.decode(value or b"", type=DeadLetter)
        return f"DLQ {letter.key} [{letter.error_type}] {letter.error}", False
    result = msgspec.json.decode(value or b"", type=DocumentResult)
    return describe(result), result.status == "ungrounded"


async def show(bootstrap: str, topic: str, *, dlq: bool, expect: int, timeout_s: float) -> Shown:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"pas-results-viewer-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=KAFKA_FETCH_MAX_WAIT_MS,
    )
    # The shared fetcher reads past a record aiokafka cannot build (its getmany raises on it,
    # at every try): such a record is named here and the rest of the topic still shown.
    fetcher = Fetcher(consumer, name="results viewer")
    consumer.subscribe([topic], listener=TrackAssignment(set(), placed=fetcher.placed))
    await consumer.start()
    shown = Shown()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline and (
            expect == 0 or shown.messages < expect
        ):
            for item in _in_order(await fetcher.getmany(timeout_ms=500)):
                shown.messages += 1
                if isinstance(item, Unreadable):
                    shown.unreadable += 1
                    print(f"UNREADABLE {_place(item.record)}: {item.reason}")
                    continue
                try:
                    line, ungrounded = _described(item.value, dlq=dlq)
                except msgspec.DecodeError as exc:
                    shown.unreadable += 1
                    what = "a dead letter" if dlq else "a result"
                    print(f"UNREADABLE {_place(item)}: not {what}: {exc}")
                    continue
                shown.ungrounded += ungrounded
                print(line)
    finally:
        await consumer.stop()
    return shown


def _place(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expect", type=int, default=0, help="stop after N messages")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--dlq", action="store_true", help="show the dead letter topic")
    args = parser.parse_args()
    # The viewer names a record it cannot read itself; the shared fetcher's own log lines (a
    # consumer's, "handing it over to be dead-lettered") would only mislead, in its stdout.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    settings = load_settings_or_exit(ProcessorSettings)
    topic = settings.dlq_topic if args.dlq else settings.output_topic
    shown = asyncio.run(
        show(
            settings.bootstrap_servers,
            topic,
            dlq=args.dlq,
            expect=args.expect,
            timeout_s=args.timeout,
        )
    )
    line = f"{shown.messages} message(s) on {topic}"
    if shown.unreadable:
        line += f"; {shown.unreadable} UNREADABLE (named above, passed over)"
    if shown.ungrounded:
        line += (
            f"; {shown.ungrounded} UNGROUNDED: a figure or reason not in the document "
            "(never to be used as facts)"
        )
    print(line)


if __name__ == "__main__":
    main()
