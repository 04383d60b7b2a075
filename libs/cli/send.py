"""``pas send``: financial documents (files, or the processor's samples) to the processor's
input topic; with ``--wait``, their results (or dead letters) as they come."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec
from aiokafka import AIOKafkaProducer

from libs.cli.document_files import Describing, read_documents
from libs.cli.runtime import pass_settings, progress, run
from libs.cli.settings import CLISettings
from libs.cli.topic_reader import TopicReader
from libs.common.kafka.records import PublishFailed, send_acknowledged, stop_producer
from libs.common.schemas.documents import (
    DeadLetter,
    DocumentResult,
    DocumentType,
    FinancialDocument,
    Task,
)

_decode_result = msgspec.json.Decoder(DocumentResult).decode
_decode_letter = msgspec.json.Decoder(DeadLetter).decode
_encode = msgspec.json.Encoder().encode


class Sent(msgspec.Struct, kw_only=True):
    doc_id: str
    source_offset: str
    """``topic/partition/offset``, as the result's ``source_offset`` names it."""


class Answers(msgspec.Struct, kw_only=True):
    results: list[DocumentResult] = msgspec.field(default_factory=list)
    letters: list[DeadLetter] = msgspec.field(default_factory=list)


RECORD_MAX_BYTES = 1_000_000
"""The most a document may take as a record: a Kafka record carries 1 MiB by default, the
key and headers included (a text's characters may take up to four bytes each)."""


def _records(docs: list[FinancialDocument]) -> list[bytes]:
    """The documents as records, all checked before any is sent."""
    values = [_encode(doc) for doc in docs]
    for doc, value in zip(docs, values, strict=True):
        if len(value) > RECORD_MAX_BYTES:
            raise click.ClickException(
                f"{doc.doc_id}: {len(value):,} bytes as a record, more than Kafka takes "
                f"({RECORD_MAX_BYTES:,}); send it in pieces"
            )
    return values


async def _publish(settings: CLISettings, docs: list[FinancialDocument]) -> list[Sent]:
    values = _records(docs)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", compression_type="gzip"
    )
    await producer.start()
    sent: list[Sent] = []
    try:
        with progress() as bar:
            task = bar.add_task(f"sending to {settings.processor_input_topic}", total=len(docs))
            for doc, value in zip(docs, values, strict=True):
                try:
                    where = await send_acknowledged(
                        producer, settings.processor_input_topic, doc.doc_id.encode(), value
                    )
                except PublishFailed as exc:
                    went = ", ".join(s.doc_id for s in sent) or "none"
                    raise click.ClickException(
                        f"{doc.doc_id} not sent ({exc}); sent before it: {went}; not tried: "
                        f"{len(docs) - len(sent) - 1}"
                    ) from exc
                sent.append(
                    Sent(
                        doc_id=doc.doc_id,
                        source_offset=f"{where.topic}/{where.partition}/{where.offset}",
                    )
                )
                bar.advance(task)
    finally:
        await stop_producer(producer)
    return sent


async def send_and_wait(
    settings: CLISettings, docs: list[FinancialDocument], *, wait: bool, timeout_s: float
) -> tuple[list[Sent], Answers]:
    """Send ``docs``; when ``wait``, read the results and the DLQ from their ends (found
    before sending) until every document has one or the other, or ``timeout_s``."""
    answers = Answers()
    if not wait:
        return await _publish(settings, docs), answers
    topics = [settings.processor_output_topic, settings.processor_dlq_topic]
    async with TopicReader(settings.kafka_bootstrap_servers, topics) as reader:
        await reader.from_end()
        sent = await _publish(settings, docs)
        pending = {s.source_offset for s in sent}
        with progress() as bar:
            task = bar.add_task(f"waiting on {settings.processor_output_topic}", total=len(sent))
            async for record in reader.following(timeout_s):
                answer: DocumentResult | DeadLetter
                try:
                    if record.topic == settings.processor_output_topic:
                        result = _decode_result(record.value or b"")
                        place, answer = result.source_offset, result
                    else:
                        letter = _decode_letter(record.value or b"")
                        place = f"{letter.topic}/{letter.partition}/{letter.offset}"
                        answer = letter
                except msgspec.DecodeError:
                    continue  # someone else's record: not an answer to these documents
                if place in pending:
                    pending.discard(place)
                    if isinstance(answer, DocumentResult):
                        answers.results.append(answer)
                    else:
                        answers.letters.append(answer)
                    bar.advance(task)
                if not pending:
                    break
    return sent, answers


@click.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--sample", type=click.IntRange(min=1), help="Send N of the processor's samples.")
@click.option(
    "--task",
    type=click.Choice(typing.get_args(Task)),
    help="Ask this of every document instead of its own task (other files than JSON: summary).",
)
@click.option(
    "--doc-type",
    type=click.Choice(typing.get_args(DocumentType)),
    default="sec_filing",
    show_default=True,
    help="What a file other than JSON is.",
)
@click.option(
    "--published",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="When a file other than JSON was published (UTC; default: an e-mail's date, else "
    "the file's modification time).",
)
@click.option("--wait", is_flag=True, help="Wait for each document's result (or dead letter).")
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True)
@pass_settings
def send(
    settings: CLISettings,
    *,
    files: tuple[Path, ...],
    sample: int | None,
    task: str | None,
    doc_type: str,
    published: datetime | None,
    wait: bool,
    timeout_s: float,
) -> None:
    """Send financial documents to the processor's input topic (INPUT_TOPIC): FILES (JSON, one
    document or a list each; a PDF, an HTML page, a Word document, an e-mail or a text file,
    its text one document; a directory, the files of those kinds under it) and/or --sample N."""
    # Imported here: the processor's modules bring Litestar, two seconds every other command
    # would wait for.
    from services.kafka_llm_processor.send_samples import documents  # noqa: PLC0415
    from services.kafka_llm_processor.show_results import describe  # noqa: PLC0415

    describing = Describing(
        task=typing.cast(Task, task or "summary"),
        doc_type=typing.cast(DocumentType, doc_type),
        published_at=None if published is None else published.replace(tzinfo=UTC),
    )
    docs = read_documents(files, describing) + (documents(sample) if sample else [])
    if not docs:
        raise click.UsageError("nothing to send: give FILES or --sample N")
    if task is not None:
        docs = [msgspec.structs.replace(doc, task=typing.cast(Task, task)) for doc in docs]
    sent, answers = run(
        send_and_wait(settings, docs, wait=wait, timeout_s=timeout_s),
        broker=settings.kafka_bootstrap_servers,
    )
    for item in sent:
        click.echo(f"sent {item.doc_id} as {item.source_offset}")
    if not wait:
        return
    for result in answers.results:
        click.echo(describe(result))
    for letter in answers.letters:
        click.echo(f"DEAD-LETTERED {letter.key} [{letter.error_type}] {letter.error}")
    answered = {r.source_offset for r in answers.results}
    lettered = {f"{d.topic}/{d.partition}/{d.offset}" for d in answers.letters}
    missing = [s.doc_id for s in sent if s.source_offset not in answered | lettered]
    if missing:
        click.echo(f"no answer within {timeout_s:g} s: {', '.join(missing)}", err=True)
    if missing or answers.letters:
        raise SystemExit(1)
