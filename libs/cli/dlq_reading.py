"""Reading dead letters off the broker for ``pas dlq``: a DLQ's letters, the one at given
coordinates, and each of PAS's DLQs counted.

Reading never joins a consumer group (``topic_reader.py``): no service's offsets move.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import click
import msgspec

from libs.cli.dead_letters import Letter, parse_coordinates, read_letter
from libs.cli.replay_receipts import ReplayReceipt, read_receipts
from libs.cli.topic_reader import TopicReader


async def read_letters(bootstrap_servers: str, topic: str) -> list[Letter]:
    async with TopicReader(bootstrap_servers, [topic]) as reader:
        # Every record, those no client can build too: a listing counts what the DLQ holds.
        return [read_letter(record) for record in await reader.everything_held()]


async def letters_and_receipts(
    bootstrap_servers: str, topic: str
) -> tuple[list[Letter], dict[str, list[ReplayReceipt]]]:
    letters = await read_letters(bootstrap_servers, topic)
    return letters, await read_receipts(bootstrap_servers, topic)


async def letter_at(bootstrap_servers: str, topic: str, partition: int, offset: int) -> Letter:
    async with TopicReader(bootstrap_servers, [topic]) as reader:
        record = await reader.at(partition, offset)
    if record is None:
        raise click.ClickException(f"{topic} holds no record at {partition}:{offset}")
    return read_letter(record)


class QueueCount(msgspec.Struct, frozen=True, kw_only=True):
    """One DLQ at a glance: its letters, counted by error type (``unreadable``: a record that
    is no dead letter, or that no Kafka client can build), and when the newest failed."""

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
        for record in await reader.everything_held() if present else []:
            letter = read_letter(record)
            by_queue[letter.dlq].append(letter)
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


def coordinates(value: str) -> tuple[int, int]:
    """A letter's ``PARTITION:OFFSET`` as given on the command line; a clear usage error
    otherwise."""
    try:
        return parse_coordinates(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
