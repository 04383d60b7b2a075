"""Send the sample financial documents to the processor's input topic:
``python -m services.kafka_llm_processor.send_samples --count 7``.

The samples (``sample_documents/*.json``) are written for PAS from public company and central
bank releases. Each copy gets its own ``doc_id`` (``<sample>-<run>-<n>``) unless ``--same-ids``.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer

from libs.common.kafka.records import stop_producer
from libs.common.schemas.documents import FinancialDocument
from libs.common.settings import load_settings_or_exit
from services.kafka_llm_processor.settings import ProcessorSettings

SAMPLES = Path(__file__).parent / "sample_documents"


def sample_documents() -> list[FinancialDocument]:
    return [
        msgspec.json.decode(path.read_bytes(), type=FinancialDocument)
        for path in sorted(SAMPLES.glob("*.json"))
    ]


def documents(count: int, *, same_ids: bool = False) -> list[FinancialDocument]:
    samples = sample_documents()
    run = uuid.uuid4().hex[:6]
    return [
        msgspec.structs.replace(
            samples[n % len(samples)],
            doc_id=samples[n % len(samples)].doc_id
            if same_ids
            else f"{samples[n % len(samples)].doc_id}-{run}-{n}",
        )
        for n in range(count)
    ]


async def send(bootstrap: str, topic: str, docs: list[FinancialDocument]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", linger_ms=10)
    await producer.start()
    try:
        for doc in docs:
            await producer.send(topic, key=doc.doc_id.encode(), value=msgspec.json.encode(doc))
        await producer.flush()
    finally:
        await stop_producer(producer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=7)
    parser.add_argument("--same-ids", action="store_true", help="keep the samples' own doc_ids")
    args = parser.parse_args()
    settings = load_settings_or_exit(ProcessorSettings)
    docs = documents(args.count, same_ids=args.same_ids)
    asyncio.run(send(settings.bootstrap_servers, settings.input_topic, docs))
    for doc in docs:
        print(f"sent {doc.doc_id:<40} {doc.doc_type:<16} task={doc.task}")


if __name__ == "__main__":
    main()
