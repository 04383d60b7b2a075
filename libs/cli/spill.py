"""``pas spill list | replay``: the records the processor could publish nowhere (its spill
file), read, and sent back to their topic once what failed them is fixed.

The spill file (``PROCESSOR_SPILL_DIR/spilled.jsonl``, ``libs/common/kafka/spill.py``) is the
processor's last resort: a document whose result and dead letter the broker both refused. A
replay publishes each record to the topic it was read from (or ``--topic``), byte for byte with
its key and headers, plus ``x-pas-replay-attempt`` and ``x-pas-replayed-from``
(``spill/<topic>/<partition>/<offset>``); the processor then reads it as any other document.
Once the broker acknowledged a record it leaves the file, kept beside it in
``spilled.jsonl.replayed-<UTC time>``; what was not acknowledged, and any line that holds no
record, stays. The file is locked from its reading to that rewrite: a processor spilling
meanwhile waits, and its record is neither lost nor sent twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import msgspec
from aiokafka import AIOKafkaProducer
from rich.markup import escape
from rich.table import Table

from libs.cli.dead_letters import replay_attempt, replayed_headers
from libs.cli.runtime import err, one_line, out, pass_settings, run
from libs.cli.settings import CLISettings
from libs.common.kafka.records import send_acknowledged, stop_producer
from libs.common.kafka.spill import SPILL_FILE_NAME, SpilledRecord, SpillLine, TakenSpill


def _path(settings: CLISettings, path: Path | None) -> Path:
    return path if path is not None else Path(settings.processor_spill_dir) / SPILL_FILE_NAME


def _none_at(path: Path) -> str:
    """That nothing was spilled at ``path``, said as the absolute path looked at: the default
    is relative to where ``pas`` runs, which may not be where the processor ran."""
    relative = "" if path.is_absolute() else " (PROCESSOR_SPILL_DIR is relative to where pas runs)"
    return f"no spill file at {path.resolve()}{relative}: nothing was spilled there"


def _source(record: SpilledRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def _key(record: SpilledRecord) -> str:
    return record.key.decode(errors="replace") if record.key is not None else ""


path_argument = click.argument(
    "path", required=False, type=click.Path(dir_okay=False, path_type=Path)
)


@click.group()
def spill() -> None:
    """The processor's spill file: what no topic took (its result and its dead letter both
    refused). List it; replay it to its topic once the broker takes records again."""


@spill.command("list")
@path_argument
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one spilled record each.")
@pass_settings
def list_spilled(settings: CLISettings, path: Path | None, as_json: bool) -> None:
    """The records in the spill file PATH (default: PROCESSOR_SPILL_DIR/spilled.jsonl): where
    each was read, why it could not be used, and why no topic took it."""
    path = _path(settings, path)
    try:
        with TakenSpill(path) as taken:
            lines = taken.lines
    except FileNotFoundError:
        err.print(_none_at(path))
        return
    if as_json:
        for line in lines:
            click.echo(msgspec.json.encode(line).decode())
        return
    table = Table(title=f"{path}: {len(lines)} line(s)")
    for column in ("line", "from", "key", "error_type", "error", "refused by", "spilled_at"):
        table.add_column(column, overflow="fold")
    for line in lines:
        record = line.record
        if record is None:
            table.add_row(str(line.number), "", "", "unreadable", escape(line.unreadable or ""))
            continue
        table.add_row(
            str(line.number),
            escape(_source(record)),
            escape(_key(record)),
            escape(record.error_type),
            escape(one_line(record.error)),
            escape(one_line("; ".join(record.refused))),
            record.spilled_at.isoformat(timespec="seconds"),
        )
    out.print(table)


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one line in a replay."""

    line: SpillLine
    published: str = ""
    """Where the broker put it (topic/partition/offset); empty when it did not."""
    failure: str = ""


async def _publish(
    settings: CLISettings, lines: list[SpillLine], topic: str | None, acknowledged: set[int]
) -> list[Sent]:
    """Every record sent at once, each acknowledged within the deadline or failed; the number
    of each line the broker acknowledged goes into ``acknowledged`` as it is (so that a replay
    interrupted part way still knows what went out)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:

        async def send(line: SpillLine) -> Sent:
            record = line.record
            assert record is not None
            try:
                sent = await send_acknowledged(
                    producer,
                    topic or record.topic,
                    record.key,
                    record.value or b"",
                    replayed_headers(record.headers, f"spill/{_source(record)}"),
                    deadline_s=settings.replay_deadline_s,
                )
            except Exception as exc:
                return Sent(line=line, failure=f"{type(exc).__name__}: {exc}")
            acknowledged.add(line.number)
            return Sent(line=line, published=f"{sent.topic}/{sent.partition}/{sent.offset}")

        return list(await asyncio.gather(*(send(line) for line in lines)))
    finally:
        await stop_producer(producer)


@spill.command("replay")
@path_argument
@click.option("--topic", help="Publish to this topic instead of the one each was read from.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; publish nothing.")
@pass_settings
def replay(settings: CLISettings, path: Path | None, topic: str | None, dry_run: bool) -> None:
    """Publish every record of the spill file PATH (default: PROCESSOR_SPILL_DIR/spilled.jsonl)
    to the topic it was read from, with its key and headers plus x-pas-replay-attempt (one more
    than its own) and x-pas-replayed-from (spill/TOPIC/PARTITION/OFFSET).

    What the broker acknowledged leaves the file and is kept beside it, in
    spilled.jsonl.replayed-<UTC time>; what it did not, and lines that hold no record, stay
    (named; the command exits 1). The file is locked meanwhile: the processor's spills wait.
    """
    path = _path(settings, path)
    try:
        with TakenSpill(path) as taken:
            records = [line for line in taken.lines if line.record is not None]
            unreadable = [line for line in taken.lines if line.record is None]
            sent: list[Sent] = []
            if records and not dry_run:
                acknowledged: set[int] = set()
                try:
                    sent = run(
                        _publish(settings, records, topic, acknowledged),
                        broker=settings.kafka_bootstrap_servers,
                    )
                finally:
                    # Interrupted too (Ctrl-C while a record waits out its deadline): what
                    # the broker acknowledged leaves the file, or the next replay sends it
                    # again.
                    taken.keep({line.number for line in taken.lines} - acknowledged)
    except FileNotFoundError:
        err.print(_none_at(path))
        return
    if not records and not unreadable:
        out.print(f"{path} is empty: nothing to replay")
        return
    table = Table(title=f"{'dry run: ' if dry_run else ''}replay of {path}")
    for column in ("line", "from", "key", "replays", "outcome"):
        table.add_column(column, overflow="fold")
    outcomes = {s.line.number: s for s in sent}
    for line in records:
        assert line.record is not None
        done = outcomes.get(line.number)
        if done is None:
            outcome = f"would replay to {escape(topic or line.record.topic)}"
        elif done.published:
            outcome = f"[green]replayed[/] as {escape(done.published)}"
        else:
            outcome = f"[red]not acknowledged[/]: {escape(done.failure)}"
        table.add_row(
            str(line.number),
            escape(_source(line.record)),
            escape(_key(line.record)),
            str(replay_attempt(line.record.headers)),
            outcome,
        )
    out.print(table)
    failed = [s for s in sent if not s.published]
    verb = "would replay" if dry_run else "replayed"
    count = len(records) if dry_run else len(sent) - len(failed)
    out.print(f"{verb} {count} of {len(records)} spilled record(s)")
    if unreadable:
        named = ", ".join(f"line {line.number} ({line.unreadable})" for line in unreadable)
        err.print(f"no record on {escape(named)}; left in {path}", soft_wrap=True)
    if failed:
        numbers = ", ".join(str(s.line.number) for s in failed)
        err.print(f"not acknowledged, left in {path}: line(s) {numbers}", soft_wrap=True)
    if unreadable or failed:
        raise SystemExit(1)
