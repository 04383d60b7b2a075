"""``pas dlq list | show | replay``: the dead letters of any PAS DLQ, and sending their
originals again once what failed them is fixed.

Reading never joins a consumer group (``topic_reader.py``): no service's offsets move. A replay
publishes; it never deletes: the letter stays on its DLQ as the record of what failed.
"""

from __future__ import annotations

import json
from typing import Literal

import click
import msgspec
from aiokafka import AIOKafkaProducer
from rich.markup import escape
from rich.table import Table

from libs.cli.dead_letters import (
    MAX_REPLAYS,
    Letter,
    parse_coordinates,
    read_letter,
    refusal,
    replay_headers,
    whole_original,
)
from libs.cli.runtime import err, out, pass_settings, progress, run
from libs.cli.settings import CLISettings
from libs.cli.topic_reader import TopicReader
from libs.common.kafka.records import send_acknowledged

_ERROR_CHARS = 80
REPLAY_DEADLINE_S = 15.0


async def read_letters(bootstrap_servers: str, topic: str) -> list[Letter]:
    async with TopicReader(bootstrap_servers, [topic]) as reader:
        return [read_letter(record) for record in await reader.everything()]


def _short(text: str | None, chars: int = _ERROR_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= chars else text[: chars - 3] + "..."


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
@click.argument("topic")
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
    settings: CLISettings, topic: str, error_type: str | None, limit: int, as_json: bool
) -> None:
    """The letters on the DLQ TOPIC: where each came from, why, how often it was tried."""
    letters = run(read_letters(settings.kafka_bootstrap_servers, topic))
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
            click.echo(msgspec.json.encode(letter).decode())
        return
    table = Table(title=f"{topic}: {len(shown)} of {len(letters)} letter(s)")
    for column in ("at", "key", "error_type", "error", "attempts", "replays", "failed_at"):
        table.add_column(column, overflow="fold")
    for letter in shown:
        envelope = letter.envelope
        if envelope is None:
            table.add_row(letter.coordinates, "", "unreadable", escape(_short(letter.unreadable)))
            continue
        table.add_row(
            letter.coordinates,
            escape(envelope.key or ""),
            escape(envelope.error_type),
            escape(_short(envelope.error)),
            str(envelope.attempts),
            str(letter.replay_attempt),
            envelope.failed_at.isoformat(timespec="seconds"),
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
    fields.pop("original")
    click.echo(json.dumps(fields, indent=2, ensure_ascii=False))
    clipped = " (clipped: its first bytes only)" if envelope.original_clipped else ""
    click.echo(f"original, {envelope.original_bytes} bytes{clipped}:")
    try:
        click.echo(json.dumps(json.loads(envelope.original), indent=2, ensure_ascii=False))
    except ValueError:
        click.echo(envelope.original)


# -- replay ----------------------------------------------------------------------------------

Action = Literal["replay", "refused"]


class Decision(msgspec.Struct, kw_only=True):
    letter: Letter
    action: Action
    reason: str = ""
    forced: bool = False
    value: bytes = b""
    key: bytes | None = None
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


async def _decide(bootstrap_servers: str, letter: Letter, force: bool) -> Decision:
    envelope = letter.envelope
    if envelope is None:
        # Nothing to send: --force cannot make an original out of what is not a letter.
        return Decision(letter=letter, action="refused", reason=letter.unreadable or "")
    why = refusal(letter)
    if why is not None and not force:
        return Decision(letter=letter, action="refused", reason=why)
    key = envelope.key.encode() if envelope.key is not None else None
    source = None
    if envelope.original_clipped:
        async with TopicReader(bootstrap_servers, [envelope.topic]) as reader:
            source = await reader.at(envelope.partition, envelope.offset)
    value = whole_original(envelope, source)
    if value is None:
        # Not even with --force: a clipped original is not the record, only its first bytes.
        return Decision(
            letter=letter,
            action="refused",
            reason=f"original clipped ({envelope.original_bytes} bytes) and no longer whole on "
            f"{envelope.topic} at {envelope.partition}:{envelope.offset}",
        )
    if source is not None:
        key = source.key
    return Decision(
        letter=letter,
        action="replay",
        reason=why or "",
        forced=why is not None,
        value=value,
        key=key,
    )


async def _replay(
    settings: CLISettings, topic: str, chosen: list[Letter], *, force: bool, dry_run: bool
) -> list[Decision]:
    bootstrap = settings.kafka_bootstrap_servers
    decisions = [await _decide(bootstrap, letter, force) for letter in chosen]
    to_send = [decision for decision in decisions if decision.action == "replay"]
    if dry_run or not to_send:
        return decisions
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        with progress() as bar:
            task = bar.add_task(f"replaying from {topic}", total=len(to_send))
            for decision in to_send:
                envelope = decision.letter.envelope
                assert envelope is not None
                sent = await send_acknowledged(
                    producer,
                    envelope.topic,
                    decision.key,
                    decision.value,
                    replay_headers(decision.letter),
                    deadline_s=REPLAY_DEADLINE_S,
                )
                decision.published = f"{sent.topic}/{sent.partition}/{sent.offset}"
                bar.advance(task)
    finally:
        await producer.stop()
    return decisions


def _outcome(decision: Decision, dry_run: bool) -> str:
    envelope = decision.letter.envelope
    if decision.action == "refused":
        return f"[red]refused[/]: {escape(decision.reason)}"
    forced = f" [yellow](forced: {escape(decision.reason)})[/]" if decision.forced else ""
    if dry_run:
        return f"would replay to {escape(envelope.topic if envelope else '')}{forced}"
    return f"[green]replayed[/] as {escape(decision.published)}{forced}"


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
    dry_run: bool,
) -> None:
    """Publish the originals of letters on the DLQ TOPIC to their source topic again.

    Each goes with its key and headers, plus x-pas-replay-attempt (one more than the
    original's) and x-pas-replayed-from (DLQ/partition/offset). The letters stay on the DLQ:
    a topic is append-only, and the DLQ is the audit trail. Letters that would fail the same
    way (a record that is not valid, too large, already replayed 3 times) are refused, named,
    and the command exits 1, unless --force. A clipped original is replayed only from its
    source topic, whole and matching its sha256.
    """
    letters = run(read_letters(settings.kafka_bootstrap_servers, topic))
    chosen = _selected(letters, offsets, error_type, every)
    if not chosen:
        err.print(f"no letter on {topic} matches")
        return
    decisions = run(
        _replay(settings, topic, chosen, force=force, dry_run=dry_run),
        broker=settings.kafka_bootstrap_servers,
    )
    table = Table(title=f"{'dry run: ' if dry_run else ''}replay from {topic}")
    for column in ("at", "key", "error_type", "outcome"):
        table.add_column(column, overflow="fold")
    for decision in decisions:
        envelope = decision.letter.envelope
        table.add_row(
            decision.letter.coordinates,
            escape(envelope.key or "") if envelope else "",
            escape(envelope.error_type) if envelope else "unreadable",
            _outcome(decision, dry_run),
        )
    out.print(table)
    refused = [decision for decision in decisions if decision.action == "refused"]
    replayed = len(decisions) - len(refused)
    verb = "would replay" if dry_run else "replayed"
    out.print(
        f"{verb} {replayed}, refused {len(refused)}; the letters stay on {topic} "
        "(append-only: it is the record of what failed)"
    )
    if refused:
        named = ", ".join(f"{d.letter.coordinates} ({d.reason})" for d in refused)
        err.print(f"refused: {escape(named)}", soft_wrap=True)
        raise SystemExit(1)
