"""Show results: ``python -m services.kafka_llm_processor.show_results [--expect N] [--dlq]``."""

from __future__ import annotations

import argparse
import asyncio
import uuid

import msgspec
from aiokafka import AIOKafkaConsumer

from libs.common.constants import KAFKA_FETCH_MAX_WAIT_MS
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


async def show(bootstrap: str, topic: str, *, dlq: bool, expect: int, timeout_s: float) -> Shown:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"pas-results-viewer-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=KAFKA_FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    shown = Shown()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline and (
            expect == 0 or shown.messages < expect
        ):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    shown.messages += 1
                    if dlq:
                        letter = msgspec.json.decode(record.value, type=DeadLetter)
                        print(f"DLQ {letter.key} [{letter.error_type}] {letter.error}")
                        continue
                    result = msgspec.json.decode(record.value, type=DocumentResult)
                    shown.ungrounded += result.status == "ungrounded"
                    print(describe(result))
    finally:
        await consumer.stop()
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expect", type=int, default=0, help="stop after N messages")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--dlq", action="store_true", help="show the dead letter topic")
    args = parser.parse_args()
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
    if shown.ungrounded:
        line += (
            f"; {shown.ungrounded} UNGROUNDED: a figure or reason not in the document "
            "(never to be used as facts)"
        )
    print(line)


if __name__ == "__main__":
    main()
