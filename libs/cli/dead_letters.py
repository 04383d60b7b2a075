"""Dead letters as ``pas dlq`` reads them, and what replaying one means.

Every PAS DLQ carries the one :class:`DeadLetter` envelope. Replaying a letter publishes its
``original`` to its source topic (``letter.topic``) with its key and headers, plus
``x-pas-replay-attempt`` (the original's own, plus one) and ``x-pas-replayed-from`` (the
letter's ``dlq/partition/offset``). The letter stays where it is: a topic is append-only, and
the DLQ is the audit trail of what failed and was sent again.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

import msgspec

from libs.cli.topic_reader import Record
from libs.common.schemas.documents import DeadLetter

HEADER_REPLAY_ATTEMPT: Final = "x-pas-replay-attempt"
HEADER_REPLAYED_FROM: Final = "x-pas-replayed-from"
MAX_REPLAYS: Final = 3
"""A letter whose original was replayed this often already is refused (unless forced): three
tries that failed again say the cause was not fixed."""

# What fails the same way however often it is sent: the record itself is wrong. The processor
# writes invalid_document and too_large; the runner invalid_event, not_json, empty,
# unsupported_event_type and invalid_input; analytics invalid_<record> and empty; the version
# manager invalid_event and invalid_outcome. Everything else (an LLM's failure, an unknown
# workflow or experiment, a result not published) may go through once its cause is fixed.
_SAME_AGAIN: Final = frozenset({"too_large", "empty", "not_json", "unsupported_event_type"})
_SAME_AGAIN_PREFIX: Final = "invalid_"

_COORDINATES = re.compile(r"^(?P<partition>\d+):(?P<offset>\d+)$")

_decode_letter = msgspec.json.Decoder(DeadLetter).decode


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter where it sits on its DLQ; ``envelope`` is ``None`` for a record that is
    not a :class:`DeadLetter` (``unreadable`` says why)."""

    dlq: str
    partition: int
    offset: int
    envelope: DeadLetter | None
    unreadable: str | None = None

    @property
    def coordinates(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def replay_attempt(self) -> int:
        """How often the original had been replayed before it failed this time."""
        return 0 if self.envelope is None else replay_attempt(_as_bytes(self.envelope.headers))


def read_letter(record: Record) -> Letter:
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


def whole_original(envelope: DeadLetter, source: Record | None) -> bytes | None:
    """The original's bytes: the letter's own unless it was clipped, else the record on the
    source topic when it is still there and its sha256 is the letter's; ``None`` when the whole
    original is nowhere (publishing a clipped one would only fail again)."""
    if not envelope.original_clipped:
        return envelope.original.encode()
    if source is None or source.value is None:
        return None
    if hashlib.sha256(source.value).hexdigest() != envelope.original_sha256:
        return None
    whole: bytes = source.value
    return whole


def replay_headers(letter: Letter) -> list[tuple[str, bytes]]:
    """The original's headers with the replay's own two in place of any earlier ones."""
    assert letter.envelope is not None
    return replayed_headers(
        _as_bytes(letter.envelope.headers), f"{letter.dlq}/{letter.partition}/{letter.offset}"
    )


def _as_bytes(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """An envelope's headers (text) as a record carries them."""
    return [(name, value.encode()) for name, value in headers.items()]


def replay_attempt(headers: list[tuple[str, bytes]]) -> int:
    """How often a record with these headers had been replayed before."""
    raw = dict(headers).get(HEADER_REPLAY_ATTEMPT, b"0")
    return int(raw) if raw.isdigit() else 0


def replayed_headers(headers: list[tuple[str, bytes]], source: str) -> list[tuple[str, bytes]]:
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
