"""``pas dlq replay``: sending the originals of dead letters to their source topic again,
byte for byte, once what failed them is fixed (what that means: ``dead_letters.py``).

A replay publishes; it never deletes: the letter stays on its DLQ as the record of what failed.
Each replay the broker acknowledged is recorded (``replay_receipts.py``).
"""

from __future__ import annotations

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
    NoOriginal,
    OriginalRecord,
    not_exact,
    original_record,
    readable_at_source,
    readable_key,
    refusal,
    replayed_headers,
)
from libs.cli.dlq_reading import coordinates, read_letters
from libs.cli.replay_receipts import ReplayReceipt, read_receipts, record_receipt
from libs.cli.runtime import err, out, pass_settings, progress, run
from libs.cli.settings import CLISettings
from libs.cli.topic_reader import Record, TopicReader
from libs.common.kafka.records import PublishFailed, send_acknowledged, stop_producer
from libs.common.kafka.unreadable import Unreadable

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
        wanted = [coordinates(at) for at in offsets]
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
    source: Record | Unreadable | None = None
    inexact = not_exact(envelope)
    if inexact is not None and not readable_at_source(envelope):
        return Decision(letter=letter, action="refused", reason=inexact)
    if inexact is not None:
        async with TopicReader(bootstrap_servers, [envelope.topic]) as reader:
            source = await reader.at(envelope.partition, envelope.offset)
    original = original_record(envelope, source)
    if isinstance(original, NoOriginal):
        # Not even with --force: what the letter holds is not the record (only its first bytes,
        # or text standing for bytes), and sending it would send another record.
        return Decision(letter=letter, action="refused", reason=f"{inexact}, and {original.reason}")
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
        await _decide(bootstrap, letter, receipts.get(letter.place, []), force=force, again=again)
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
            replayed_headers(original.headers, letter.place),
            deadline_s=deadline_s,
        )
    except PublishFailed as exc:
        decision.action, decision.reason = "failed", str(exc)
        return
    decision.published = f"{sent.topic}/{sent.partition}/{sent.offset}"
    receipt = ReplayReceipt(
        letter=decision.letter.place, replayed_as=decision.published, at=datetime.now(UTC)
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


@click.command("replay")
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
