"""``pas dlq list | show | replay``: the dead letters of any PAS DLQ, and sending their
originals again once what failed them is fixed.

Reading never joins a consumer group (``topic_reader.py``): no service's offsets move. A replay
publishes; it never deletes: the letter stays on its DLQ as the record of what failed. Listing
and showing are here; replaying is in ``dlq_replay.py``, reading letters in ``dlq_reading.py``.
"""

from __future__ import annotations

import json

import click
import msgspec
from rich.markup import escape
from rich.table import Table

from libs.cli.dead_letters import Letter, readable, readable_key
from libs.cli.dlq_reading import coordinates, count_letters, letter_at, letters_and_receipts
from libs.cli.dlq_replay import replay
from libs.cli.runtime import one_line, out, pass_settings, run
from libs.cli.settings import CLISettings
from libs.common.schemas.documents import DeadLetter


class ListedLetter(Letter, frozen=True, kw_only=True):
    """A line of ``pas dlq list TOPIC --json``: the letter, and the records its original was
    replayed as since it failed (by ``pas dlq replay``'s receipts)."""

    replayed_as: list[str] = msgspec.field(default_factory=list)


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
    letters, receipts = run(letters_and_receipts(settings.kafka_bootstrap_servers, topic))
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
            sent = [receipt.replayed_as for receipt in receipts.get(letter.place, [])]
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
            str(len(receipts.get(letter.place, []))),
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


@dlq.command("show")
@click.argument("topic")
@click.argument("at", metavar="PARTITION:OFFSET")
@click.option("--json", "as_json", is_flag=True, help="The envelope exactly as stored.")
@pass_settings
def show_letter(settings: CLISettings, topic: str, at: str, as_json: bool) -> None:
    """One letter whole: the envelope, then its original (pretty-printed when JSON)."""
    partition, offset = coordinates(at)
    letter = run(letter_at(settings.kafka_bootstrap_servers, topic, partition, offset))
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


dlq.add_command(replay)
