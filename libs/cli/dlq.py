"""``pas dlq list | show | replay``: the dead letters of any PAS DLQ, and sending their
originals again once what failed them is fixed.

Reading never joins a consumer group (``topic_reader.py``): no service's offsets move. A replay
publishes; it never deletes: the letter stays on its DLQ as the record of what failed.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Literal

import click
import msgspec
from aiokafka import AIOKafkaProducer
from rich.markup import escape
from rich.table import Table

from libs.cli.dead_letters import (
    MAX_REPLAYS,
    Letter,
    OriginalRecord,
    not_exact,
    original_record,
    parse_coordinates,
    read_letter,
    readable,
    readable_at_source,
    readable_key,
    refusal,
    replayed_headers,
)
from libs.cli.replay_receipts import ReplayReceipt, letter_place, read_receipts, record_receipt
from libs.cli.runtime import err, one_line, out, pass_settings, progress, run
from libs.cli.settings import CLISettings
from libs.cli.topic_reader import TopicReader
from libs.common.kafka.records import PublishFailed, send_acknowledged, stop_producer
from libs.common.schemas.documents import DeadLetter


async def read_letters(bootstrap_servers: str, topic: str) -> list[Letter]:
    async with TopicReader(bootstrap_servers, [topic]) as reader:
        return [read_letter(record) for record in await reader.everything()]


async def _letters_and_receipts(
    bootstrap_servers: str, topic: str
) -> tuple[list[Letter], dict[str, list[ReplayReceipt]]]:
    letters = await read_letters(bootstrap_servers, topic)
    return letters, await read_receipts(bootstrap_servers, topic)


def _place(letter: Letter) -> str:
    return letter_place(letter.dlq, letter.partition, letter.offset)


class ListedLetter(Letter, frozen=True, kw_only=True):
    """A line of ``pas dlq list TOPIC --json``: the letter, and the records its original was
    replayed as since it failed (by ``pas dlq replay``'s receipts)."""

    replayed_as: list[str] = msgspec.field(default_factory=list)


class QueueCount(msgspec.Struct, frozen=True, kw_only=True):
    """One DLQ at a glance: its letters, counted by error type (``unreadable``: a record that
    is no dead letter), and when the newest failed."""

    dlq: str
    written_by: str
    exists: bool
    letters: int
    error_types: dict[str, int]
    newest_failed_at: datetime | None


async def count_letters(bootstrap_servers: str, writers: dict[str, str]) -> list[QueueCount]:
    """Each DLQ of ``writers`` (topic: the service that writes it); one the broker does not
    have yet (nothing failed since it started) counts none."""
    by_queue: dict[str, list[Letter]] = {topic: [] for topic in writers}
    async with TopicReader(bootstrap_servers, writers, missing_ok=True) as reader:
        present = set(reader.topics)
        for record in await reader.everything() if present else []:
            by_queue[record.topic].append(read_letter(record))
    counts = []
    for topic, letters in by_queue.items():
        failed_at = [letter.envelope.failed_at for letter in letters if letter.envelope]
        kinds = Counter(
            letter.envelope.error_type if letter.envelope else "unreadable" for letter in letters
        )
        counts.append(
            QueueCount(
                dlq=topic,
                written_by=writers[topic],
                exists=topic in present,
                letters=len(letters),
                error_types=dict(kinds.most_common()),
                newest_failed_at=max(failed_at, default=None),
            )
        )
    return counts


def _coordinates(value: str) -> tuple[int, int]:
    try:
        return parse_coordinates(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group()
def dlq() -> None:
    """Dead letter queues: list, show and replay their letters (any of PAS's four DLQs)."""


# -- list ------------------------------------------------------------------------------------


@dlq.command("list")
@click.argument("topic", required=False)
@click.option("--error-type", help="Only letters of this error_type (invalid_document, ...).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show the newest N letters.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one envelope each.")
@pass_settings
def list_letters(
    settings: CLISettings, topic: str | None, error_type: str | None, limit: int, as_json: bool
) -> None:
    """The letters on the DLQ TOPIC: where each came from, why, how often it was tried.
    Without TOPIC, PAS's four DLQs at a glance: their letters by error type (the topics are
    the services' own settings: PROCESSOR_DLQ_TOPIC or DLQ_TOPIC, RUNNER_DLQ_TOPIC,
    ANALYTICS_DLQ_TOPIC, VERSIONING_DLQ_TOPIC)."""
    if topic is None:
        if error_type is not None:
            raise click.UsageError("--error-type needs the TOPIC whose letters it picks")
        _list_queues(settings, as_json)
        return
    letters, receipts = run(_letters_and_receipts(settings.kafka_bootstrap_servers, topic))
    if error_type is not None:
        letters = [
            letter
            for letter in letters
            if letter.envelope is not None and letter.envelope.error_type == error_type
        ]
    # Oldest first, as written; a DLQ has one partition (PAS creates them so).
    shown = letters[-limit:]
    if as_json:
        for letter in shown:
            sent = [receipt.replayed_as for receipt in receipts.get(_place(letter), [])]
            listed = ListedLetter(**msgspec.structs.asdict(letter), replayed_as=sent)
            click.echo(msgspec.json.encode(listed).decode())
        return
    table = Table(title=f"{topic}: {len(shown)} of {len(letters)} letter(s)")
    columns = ("at", "key", "error_type", "error", "attempts", "replays", "replayed", "failed_at")
    for column in columns:
        table.add_column(column, overflow="fold")
    for letter in shown:
        envelope = letter.envelope
        if envelope is None:
            table.add_row(letter.coordinates, "", "unreadable", escape(one_line(letter.unreadable)))
            continue
        table.add_row(
            letter.coordinates,
            escape(readable_key(envelope)),
            escape(envelope.error_type),
            escape(one_line(envelope.error)),
            str(envelope.attempts),
            str(letter.replay_attempt),
            str(len(receipts.get(_place(letter), []))),
            envelope.failed_at.isoformat(timespec="seconds"),
        )
    out.print(table)


def _list_queues(settings: CLISettings, as_json: bool) -> None:
    counts = run(count_letters(settings.kafka_bootstrap_servers, settings.dead_letter_queues()))
    if as_json:
        for count in counts:
            click.echo(msgspec.json.encode(count).decode())
        return
    table = Table(title="PAS dead letter queues (pas dlq list TOPIC shows the letters)")
    for column in ("dlq", "written by"):
        table.add_column(column, no_wrap=True)
    for column in ("letters", "error types", "newest failed_at"):
        table.add_column(column, overflow="fold")
    for count in counts:
        table.add_row(
            escape(count.dlq),
            count.written_by,
            str(count.letters) if count.exists else "0 (no topic yet)",
            escape(", ".join(f"{kind} {n}" for kind, n in count.error_types.items())),
            count.newest_failed_at.isoformat(timespec="seconds") if count.newest_failed_at else "",
        )
    out.print(table)


# -- show ------------------------------------------------------------------------------------


async def _one_letter(bootstrap_servers: str, topic: str, partition: int, offset: int) -> Letter:
    async with TopicReader(bootstrap_servers, [topic]) as reader:
        record = await reader.at(partition, offset)
    if record is None:
        raise click.ClickException(f"{topic} holds no record at {partition}:{offset}")
    return read_letter(record)


@dlq.command("show")
@click.argument("topic")
@click.argument("at", metavar="PARTITION:OFFSET")
@click.option("--json", "as_json", is_flag=True, help="The envelope exactly as stored.")
@pass_settings
def show_letter(settings: CLISettings, topic: str, at: str, as_json: bool) -> None:
    """One letter whole: the envelope, then its original (pretty-printed when JSON)."""
    partition, offset = _coordinates(at)
    letter = run(_one_letter(settings.kafka_bootstrap_servers, topic, partition, offset))
    envelope = letter.envelope
    if envelope is None:
        raise click.ClickException(f"{topic} {at}: {letter.unreadable}")
    if as_json:
        click.echo(msgspec.json.encode(envelope).decode())
        return
    fields = msgspec.to_builtins(envelope)
    # The exact bytes (base64 with --json) are shown below as text a person reads instead.
    for exact in ("original", "original_base64", "key_base64", "headers_base64"):
        fields.pop(exact, None)
    click.echo(json.dumps(fields, indent=2, ensure_ascii=False))
    _echo_binary_parts(envelope)
    if envelope.tombstone:
        click.echo("original: none (a tombstone: the record had no value)")
        return
    clipped = " (clipped: its first bytes only)" if envelope.original_clipped else ""
    if envelope.original_base64 is not None:
        click.echo(f"original, {envelope.original_bytes} bytes{clipped}, not UTF-8 ({_ESCAPES}):")
        click.echo(readable(envelope.original_base64))
        return
    click.echo(f"original, {envelope.original_bytes} bytes{clipped}:")
    try:
        click.echo(json.dumps(json.loads(envelope.original), indent=2, ensure_ascii=False))
    except ValueError:
        click.echo(envelope.original)


_ESCAPES = "\\xNN: a byte that is not"


def _echo_binary_parts(envelope: DeadLetter) -> None:
    """The key and headers exactly, when their text above (U+FFFD for what is not UTF-8, the
    last of a repeated header) does not say them."""
    if envelope.key_base64 is not None:
        click.echo(f"key, not UTF-8 ({_ESCAPES}): {readable_key(envelope)}")
    if envelope.headers_base64 is not None:
        click.echo(f"headers, exactly and in order ({_ESCAPES}):")
        for name, value in envelope.headers_base64:
            click.echo(f"  {name}: {'(no value)' if value is None else readable(value)}")


# -- replay ----------------------------------------------------------------------------------

Action = Literal["replay", "refused", "failed"]


class Decision(msgspec.Struct, kw_only=True):
    letter: Letter
    action: Action
    reason: str = ""
    forced: bool = False
    original: OriginalRecord | None = None
    """What a replay sends: the record the letter was written for, byte for byte."""
    published: str = ""


def _selected(
    letters: list[Letter], offsets: tuple[str, ...], error_type: str | None, every: bool
) -> list[Letter]:
    if not (offsets or error_type or every):
        raise click.UsageError(
            "choose the letters: --offset P:O (repeatable), --error-type or --all"
        )
    chosen = letters
    if offsets:
        wanted = [_coordinates(at) for at in offsets]
        by_place = {(letter.partition, letter.offset): letter for letter in letters}
        missing = [f"{p}:{o}" for p, o in wanted if (p, o) not in by_place]
        if missing:
            raise click.ClickException(f"no letter at {', '.join(missing)}")
        chosen = [by_place[place] for place in dict.fromkeys(wanted)]
    if error_type:
        chosen = [
            letter
            for letter in chosen
            if letter.envelope is not None and letter.envelope.error_type == error_type
        ]
    return chosen


async def _decide(
    bootstrap_servers: str,
    letter: Letter,
    receipts: list[ReplayReceipt],
    *,
    force: bool,
    again: bool,
) -> Decision:
    envelope = letter.envelope
    if envelope is None:
        # Nothing to send: --force cannot make an original out of what is not a letter.
        return Decision(letter=letter, action="refused", reason=letter.unreadable or "")
    if receipts and not again:
        last = receipts[-1]
        return Decision(
            letter=letter,
            action="refused",
            reason=f"replayed already as {last.replayed_as} at "
            f"{last.at.isoformat(timespec='seconds')} (--again sends it once more)",
        )
    why = refusal(letter)
    if why is not None and not force:
        return Decision(letter=letter, action="refused", reason=why)
    source = None
    inexact = not_exact(envelope)
    if inexact is not None and not readable_at_source(envelope):
        return Decision(letter=letter, action="refused", reason=inexact)
    if inexact is not None:
        async with TopicReader(bootstrap_servers, [envelope.topic]) as reader:
            source = await reader.at(envelope.partition, envelope.offset)
    original = original_record(envelope, source)
    if original is None:
        # Not even with --force: what the letter holds is not the record (only its first bytes,
        # or text standing for bytes), and sending it would send another record.
        return Decision(
            letter=letter,
            action="refused",
            reason=f"{inexact}, and the record is no longer whole on {envelope.topic} at "
            f"{envelope.partition}:{envelope.offset}",
        )
    return Decision(
        letter=letter,
        action="replay",
        reason=why or "",
        forced=why is not None,
        original=original,
    )


async def _replay(
    settings: CLISettings,
    topic: str,
    chosen: list[Letter],
    *,
    force: bool,
    again: bool,
    dry_run: bool,
) -> list[Decision]:
    bootstrap = settings.kafka_bootstrap_servers
    receipts = await read_receipts(bootstrap, topic, create=not dry_run)
    decisions = [
        await _decide(bootstrap, letter, receipts.get(_place(letter), []), force=force, again=again)
        for letter in chosen
    ]
    to_send = [decision for decision in decisions if decision.action == "replay"]
    if dry_run or not to_send:
        return decisions
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        with progress() as bar:
            task = bar.add_task(f"replaying from {topic}", total=len(to_send))
            for decision in to_send:
                await _send_one(producer, decision, settings.replay_deadline_s)
                bar.advance(task)
    finally:
        await stop_producer(producer)
    return decisions


async def _send_one(producer: AIOKafkaProducer, decision: Decision, deadline_s: float) -> None:
    """Publish the letter's original, then its receipt. A record that fails is marked so and
    the others still go: the table then says what went out and what did not."""
    letter, original = decision.letter, decision.original
    assert letter.envelope is not None
    assert original is not None
    try:
        sent = await send_acknowledged(
            producer,
            letter.envelope.topic,
            original.key,
            original.value,
            replayed_headers(original.headers, _place(letter)),
            deadline_s=deadline_s,
        )
    except PublishFailed as exc:
        decision.action, decision.reason = "failed", str(exc)
        return
    decision.published = f"{sent.topic}/{sent.partition}/{sent.offset}"
    receipt = ReplayReceipt(
        letter=_place(decision.letter), replayed_as=decision.published, at=datetime.now(UTC)
    )
    try:
        await record_receipt(producer, receipt, deadline_s=deadline_s)
    except PublishFailed as exc:
        # Sent, not recorded: said in the table, so that no one replays it blindly again.
        decision.reason = f"no receipt recorded ({exc}): a replay without --again would send it"


def _outcome(decision: Decision, dry_run: bool) -> str:
    envelope = decision.letter.envelope
    if decision.action == "refused":
        return f"[red]refused[/]: {escape(decision.reason)}"
    if decision.action == "failed":
        return f"[red]not sent[/]: {escape(decision.reason)}"
    if decision.forced:
        note = f" [yellow](forced: {escape(decision.reason)})[/]"
    elif decision.reason:
        note = f" [yellow]({escape(decision.reason)})[/]"
    else:
        note = ""
    if dry_run:
        return f"would replay to {escape(envelope.topic if envelope else '')}{note}"
    return f"[green]replayed[/] as {escape(decision.published)}{note}"


@dlq.command("replay")
@click.argument("topic")
@click.option("--offset", "offsets", multiple=True, metavar="P:O", help="A letter (repeatable).")
@click.option("--error-type", help="The letters of this error_type.")
@click.option("--all", "every", is_flag=True, help="Every letter on the DLQ.")
@click.option(
    "--force",
    is_flag=True,
    help="Replay also what would fail the same way (a bad record, or replayed "
    f"{MAX_REPLAYS} times already).",
)
@click.option(
    "--again",
    is_flag=True,
    help="Replay also letters replayed before (each replay is recorded on pas-dlq-replays).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; publish nothing.")
@pass_settings
def replay(
    settings: CLISettings,
    *,
    topic: str,
    offsets: tuple[str, ...],
    error_type: str | None,
    every: bool,
    force: bool,
    again: bool,
    dry_run: bool,
) -> None:
    """Publish the originals of letters on the DLQ TOPIC to their source topic again.

    Each goes byte for byte as it was (value, key and headers; a tombstone as a tombstone),
    plus x-pas-replay-attempt (one more than the original's) and x-pas-replayed-from
    (DLQ/partition/offset). The letters stay on the DLQ:
    a topic is append-only, and the DLQ is the audit trail. Letters that would fail the same
    way (a record that is not valid, too large, already replayed 3 times) are refused, named,
    and the command exits 1, unless --force. Each replay is recorded on pas-dlq-replays, and a
    letter replayed before is refused unless --again (so that running the command twice does
    not send an original twice). A letter that does not hold its record exactly (a part
    clipped, or an original whose bytes do not match its sha256) is replayed only from its
    source topic, whole and matching its sha256, and refused otherwise, even with --force. A
    record the broker does not take is named and the others still go (exit 1).
    """
    letters = run(read_letters(settings.kafka_bootstrap_servers, topic))
    chosen = _selected(letters, offsets, error_type, every)
    if not chosen:
        err.print(f"no letter on {topic} matches")
        return
    decisions = run(
        _replay(settings, topic, chosen, force=force, again=again, dry_run=dry_run),
        broker=settings.kafka_bootstrap_servers,
    )
    table = Table(title=f"{'dry run: ' if dry_run else ''}replay from {topic}")
    for column in ("at", "key", "error_type", "outcome"):
        table.add_column(column, overflow="fold")
    for decision in decisions:
        envelope = decision.letter.envelope
        table.add_row(
            decision.letter.coordinates,
            escape(readable_key(envelope)) if envelope else "",
            escape(envelope.error_type) if envelope else "unreadable",
            _outcome(decision, dry_run),
        )
    out.print(table)
    refused = [decision for decision in decisions if decision.action == "refused"]
    failed = [decision for decision in decisions if decision.action == "failed"]
    replayed = len(decisions) - len(refused) - len(failed)
    verb = "would replay" if dry_run else "replayed"
    not_sent = f", not sent {len(failed)}" if failed else ""
    out.print(
        f"{verb} {replayed}, refused {len(refused)}{not_sent}; the letters stay on {topic} "
        "(append-only: it is the record of what failed)"
    )
    for kind, decided in (("refused", refused), ("not sent", failed)):
        if decided:
            named = ", ".join(f"{d.letter.coordinates} ({d.reason})" for d in decided)
            err.print(f"{kind}: {escape(named)}", soft_wrap=True)
    if refused or failed:
        raise SystemExit(1)
