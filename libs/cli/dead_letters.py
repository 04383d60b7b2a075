"""Dead letters as ``pas dlq`` reads them, and what replaying one means.

Every PAS DLQ carries the one :class:`DeadLetter` envelope. Replaying a letter publishes its
original record to its source topic (``letter.topic``), byte for byte: its value (a tombstone
as a tombstone), key and headers, plus ``x-pas-replay-attempt`` (the original's own, plus one)
and ``x-pas-replayed-from`` (the letter's ``dlq/partition/offset``). The record is the letter's
own when the letter holds it exactly (nothing clipped, and its bytes' sha256 the letter's
``original_sha256``), else the one on the source topic at the letter's coordinates, when it is
still there and its sha256 matches; when neither, nothing is sent (:func:`original_record`).
The letter stays where it is: a topic is append-only, and the DLQ is the audit trail of what
failed and was sent again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Final

import msgspec

from libs.cli.replay_receipts import letter_place
from libs.cli.topic_reader import Record
from libs.common.kafka.unreadable import CORRUPT_BATCH, HEADER_NAME_NOT_UTF8, Unreadable
from libs.common.schemas.documents import DeadLetter

HEADER_REPLAY_ATTEMPT: Final = "x-pas-replay-attempt"
HEADER_REPLAYED_FROM: Final = "x-pas-replayed-from"
MAX_REPLAYS: Final = 3
"""A letter whose original was replayed this often already is refused (unless forced): three
tries that failed again say the cause was not fixed."""

# What fails the same way however often it is sent: the record itself is wrong. The processor
# writes invalid_document, too_large and tombstone; the runner invalid_event, not_json,
# tombstone (empty in its letters before 2026-12-07), too_large, unsupported_event_type and
# invalid_input; analytics invalid_<record> and empty; the version manager invalid_event and
# invalid_outcome. Everything else (an LLM's failure, an unknown workflow or experiment, a
# result not published) may go through once its cause is fixed.
_SAME_AGAIN: Final = frozenset(
    {
        "too_large",
        "tombstone",
        "empty",
        "not_json",
        "unsupported_event_type",
        HEADER_NAME_NOT_UTF8,
        CORRUPT_BATCH,
    }
)
_NO_CLIENT_READS: Final = frozenset({HEADER_NAME_NOT_UTF8, CORRUPT_BATCH})
"""Letters of records no Kafka client could build (``libs/common/kafka/unreadable.py``): the
letter holds them inexactly (a header name read with U+FFFD) or not at all, and the source
topic gives them to no reader."""
_SAME_AGAIN_PREFIX: Final = "invalid_"

_COORDINATES = re.compile(r"^(?P<partition>\d+):(?P<offset>\d+)$")

_decode_letter = msgspec.json.Decoder(DeadLetter).decode


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter where it sits on its DLQ; ``envelope`` is ``None`` for a record that is
    not a :class:`DeadLetter`, or that no Kafka client can build (``unreadable`` says why)."""

    dlq: str
    partition: int
    offset: int
    envelope: DeadLetter | None
    unreadable: str | None = None

    @property
    def coordinates(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def place(self) -> str:
        """``dlq/partition/offset``: how its replay receipts and replayed records name it."""
        return letter_place(self.dlq, self.partition, self.offset)

    @property
    def replay_attempt(self) -> int:
        """How often the original had been replayed before it failed this time."""
        return 0 if self.envelope is None else replay_attempt(self.envelope.exact_headers())


def read_letter(record: Record | Unreadable) -> Letter:
    """The letter ``record`` holds; a record that is none (not a :class:`DeadLetter`, or one
    no Kafka client can build) is a letter without an envelope, saying why."""
    if isinstance(record, Unreadable):
        return Letter(
            dlq=record.record.topic,
            partition=record.record.partition,
            offset=record.offset,
            envelope=None,
            unreadable=record.reason,
        )
    try:
        envelope: DeadLetter | None = _decode_letter(record.value or b"")
        unreadable = None
    except msgspec.DecodeError as exc:
        envelope, unreadable = None, f"not a dead letter: {exc}"
    return Letter(
        dlq=record.topic,
        partition=record.partition,
        offset=record.offset,
        envelope=envelope,
        unreadable=unreadable,
    )


def parse_coordinates(text: str) -> tuple[int, int]:
    """``P:O`` as (partition, offset); ``ValueError`` naming the expected form."""
    match = _COORDINATES.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not PARTITION:OFFSET (such as 0:42)")
    return int(match["partition"]), int(match["offset"])


def fails_the_same_way(error_type: str) -> bool:
    return error_type in _SAME_AGAIN or error_type.startswith(_SAME_AGAIN_PREFIX)


def refusal(letter: Letter) -> str | None:
    """Why replaying ``letter`` would fail the same way (refused unless forced), or ``None``."""
    envelope = letter.envelope
    if envelope is None:
        return letter.unreadable or "not a dead letter"
    if fails_the_same_way(envelope.error_type):
        return f"{envelope.error_type}: the record itself is wrong; fix its producer"
    if letter.replay_attempt >= MAX_REPLAYS:
        return f"replayed {letter.replay_attempt} times already"
    return None


class OriginalRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The record a letter was written for, byte for byte: what a replay sends again."""

    key: bytes | None
    value: bytes | None
    """``None``: a tombstone."""
    headers: list[tuple[str, bytes | None]]


def not_exact(envelope: DeadLetter) -> str | None:
    """Why the letter alone does not hold its record exactly (a part clipped, or an original
    whose bytes are not the ones ``original_sha256`` names), or ``None`` when it does."""
    if envelope.error_type in _NO_CLIENT_READS:
        return f"{envelope.error_type}: a record no Kafka client reads, held inexactly if at all"
    clipped = [
        part
        for part, cut in (
            (f"original ({envelope.original_bytes} bytes)", envelope.original_clipped),
            ("key", envelope.key_clipped),
            ("headers", envelope.headers_clipped),
        )
        if cut
    ]
    if clipped:
        return f"{' and '.join(clipped)} clipped"
    # A letter written before original_sha256 existed cannot be checked; it is taken as it is.
    if envelope.original_sha256 is not None and _sha256(envelope.exact_original()) != (
        envelope.original_sha256
    ):
        return "original does not match its original_sha256 (not its bytes: read as text)"
    return None


def readable_at_source(envelope: DeadLetter) -> bool:
    """Whether the letter's record may be read whole from its source topic."""
    return envelope.error_type not in _NO_CLIENT_READS


class NoOriginal(msgspec.Struct, frozen=True, kw_only=True):
    """Why a letter that does not hold its record exactly cannot be replayed from its source
    topic either: the record there is gone, unreadable, or another one."""

    reason: str


def original_record(
    envelope: DeadLetter, source: Record | Unreadable | None
) -> OriginalRecord | NoOriginal:
    """The record the letter was written for: the letter's own when it holds it exactly
    (:func:`not_exact`), else ``source`` (the record at the letter's coordinates on its source
    topic, ``None`` when there is none) when it can be read and its value's sha256 is the
    letter's; else why the record is whole nowhere (sending what the letter holds would send
    another record)."""
    if not_exact(envelope) is None:
        return OriginalRecord(
            key=envelope.exact_key(),
            value=envelope.exact_original(),
            headers=envelope.exact_headers(),
        )
    at = f"{envelope.topic} at {envelope.partition}:{envelope.offset}"
    if source is None:
        return NoOriginal(reason=f"the record is no longer on {at}")
    if isinstance(source, Unreadable):
        # Not sent even when its bytes were recovered: its header names are known with U+FFFD.
        return NoOriginal(
            reason=f"the record on {at} is there but no Kafka client reads it ({source.reason})"
        )
    if envelope.original_sha256 is None:
        return NoOriginal(
            reason=f"the letter has no original_sha256 (written before it was kept) to check "
            f"the record on {at} against"
        )
    if (source.value is None) != envelope.tombstone:
        which = "is a tombstone and the letter's is not"
        if source.value is not None:
            which = "is not a tombstone and the letter's is"
        return NoOriginal(reason=f"the record on {at} is another: it {which}")
    if _sha256(source.value) != envelope.original_sha256:
        return NoOriginal(
            reason=f"the record on {at} is another: its value does not match the letter's "
            "original_sha256"
        )
    return OriginalRecord(key=source.key, value=source.value, headers=list(source.headers))


def _sha256(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()


def readable(data: bytes) -> str:
    """Bytes as a person reads them: as UTF-8, with each byte that is not, and each character
    a terminal would not show (a NUL, an escape; not a newline or a tab), in Python's escapes
    (``\\xNN``, ``\\uNNNN``). For reading only: a backslash in the text reads the same;
    ``--json`` has the bytes exactly."""
    text = data.decode("utf-8", errors="backslashreplace")
    return "".join(
        char if char.isprintable() or char in "\n\t" else char.encode("unicode_escape").decode()
        for char in text
    )


def readable_key(envelope: DeadLetter) -> str:
    """The letter's key as ``pas dlq`` shows it: exact (``\\xNN`` for a byte that is not
    UTF-8), ``...`` at the end when clipped; ``""`` for none."""
    key = envelope.exact_key()
    if key is None:
        return ""
    return readable(key) + ("..." if envelope.key_clipped else "")


def replay_attempt(headers: Sequence[tuple[str, bytes | None]]) -> int:
    """How often a record with these headers had been replayed before."""
    raw = dict(headers).get(HEADER_REPLAY_ATTEMPT) or b"0"
    return int(raw) if raw.isdigit() else 0


def replayed_headers(
    headers: Sequence[tuple[str, bytes | None]], source: str
) -> list[tuple[str, bytes | None]]:
    """``headers`` with the replay's own two in place of any earlier ones: the attempt (one
    more than theirs) and where it was replayed from (``source``)."""
    kept = [
        (name, value)
        for name, value in headers
        if name not in (HEADER_REPLAY_ATTEMPT, HEADER_REPLAYED_FROM)
    ]
    return [
        *kept,
        (HEADER_REPLAY_ATTEMPT, str(replay_attempt(headers) + 1).encode()),
        (HEADER_REPLAYED_FROM, source.encode()),
    ]
