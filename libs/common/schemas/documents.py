"""Financial documents on ``financial-documents`` and what the processor answers on
``llm-results`` (and ``financial-documents-dlq`` when it cannot)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from libs.common.schemas.patterns import TEXT_END

DocumentType = Literal[
    "earnings_report", "sec_filing", "news", "analyst_note", "press_release", "central_bank"
]
Task = Literal["summary", "key_figures", "sentiment"]


class FinancialDocument(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # ASCII spelled out: Python's \w also takes Unicode letters, which the published JSON
    # Schema's \w (ECMA) does not, so the server took ids its own schema refuses.
    doc_id: Annotated[
        str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+" + TEXT_END)
    ]
    doc_type: DocumentType
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    # As long as a Kafka message carries (1 MiB by default); whether a model can take it is the
    # model's answer to give (the processor dead-letters what it refuses).
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=1_048_576)]
    source: Annotated[str, msgspec.Meta(max_length=500)]
    published_at: datetime
    task: Task = "summary"


class KeyFigure(msgspec.Struct, kw_only=True):
    name: str
    value: str


SentimentLabel = Literal["positive", "neutral", "negative"]


class Sentiment(msgspec.Struct, kw_only=True):
    label: SentimentLabel
    reason: str = ""


ResultStatus = Literal["ok", "ungrounded"]
"""``ungrounded``: the model answered, but with a figure (or a reason) the document does not
hold, even when asked again more strictly; never to be used as a fact."""


class DocumentResult(msgspec.Struct, kw_only=True):
    """Keyed by ``doc_id``: a redelivered document gives a second result with the same key and
    ``source_offset``, so consumers can drop the duplicate."""

    doc_id: str
    task: Task
    status: ResultStatus
    answer: str
    key_figures: list[KeyFigure] | None = None
    sentiment: Sentiment | None = None
    model: str
    prompt_tokens: int
    completion_tokens: int
    processing_ms: float
    attempts: int
    source_offset: str
    processed_at: datetime
    ungrounded: list[str] = msgspec.field(default_factory=list)
    """What made the answer ``ungrounded``: each key figure value, or the sentiment's reason
    (``reason: ...``), that the document does not hold (libs/common/grounding.py)."""
    parts: int = 1
    """The parts the document was read in: more than one when it was longer than the model's
    context, their answers combined (the processor's README, "Long documents")."""


class DeadLetter(msgspec.Struct, kw_only=True):
    """The original record with why it could not be processed: all of it up to 64 KiB, else
    its first 64 KiB (``original_clipped``), and always its full size and sha256, so that an
    envelope always fits the broker's limit.

    ``key``, ``original`` and ``headers`` are the record as text, for people and for readers
    of text. What text cannot carry is kept beside them, exactly, in fields written only when
    needed (``bytes`` here, base64 in JSON): ``key_base64`` and ``original_base64`` when the
    key or the original is not UTF-8, ``headers_base64`` when a header value is not UTF-8 (or
    null) or a name comes more than once, ``tombstone`` when the record had no value at all.
    :meth:`exact_key`, :meth:`exact_original` and :meth:`exact_headers` give the record back
    byte for byte; a part that was clipped (``key_clipped``, ``original_clipped``,
    ``headers_clipped``) is the record's only in its first bytes, and whole only on the source
    topic. Letters written before a field existed read with its default."""

    error: str
    error_type: str
    attempts: int
    """How many times the record's work was tried before it was given up (the processor's LLM
    calls, retries included; the analytics store asked to take a record it refused: 1); 0 for
    a record refused before any: one that could not be read or decoded, or that a check refused
    (the runner's bridge and versioning refuse only so). A replay's own count is the
    ``x-pas-replay-attempt`` header, not this."""
    topic: str
    partition: int
    offset: int
    key: str | None
    """The key as text: its bytes that are not UTF-8 read as U+FFFD (``key_base64`` holds
    them exactly); ``None`` when the record had no key."""
    original: str
    """The original as text, its first 64 KiB when clipped: its bytes that are not UTF-8 read
    as U+FFFD (``original_base64`` holds them exactly); ``""`` for a tombstone."""
    original_bytes: int | None = None
    """The original's full size in bytes."""
    original_sha256: str | None = None
    """Hex sha256 of the whole original, to match it against the source topic or a spill."""
    original_clipped: bool = False
    """``original`` holds only the original's first bytes."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """The headers as text, for reading: a value's bytes that are not UTF-8 read as U+FFFD,
    and of a name given more than once only the last value shows (``headers_base64`` then
    holds them all exactly)."""
    failed_at: datetime
    original_base64: bytes | None = None
    """The bytes ``original`` stands for (the first 64 KiB when clipped), exactly; written only
    when they are not UTF-8."""
    key_base64: bytes | None = None
    """The bytes ``key`` stands for, exactly; written only when they are not UTF-8."""
    key_clipped: bool = False
    """``key`` (and ``key_base64``) hold only the key's first 1 KiB."""
    headers_base64: list[tuple[str, bytes | None]] | None = None
    """Every header in order, each a ``[name, value]`` pair with its value exactly (``null``
    for a header without a value); written only when ``headers`` cannot say them: a value that
    is not UTF-8 or null, or a name that comes more than once."""
    headers_clipped: bool = False
    """Headers were cut: only the first 32 are kept, each name to 256 characters, each value
    to its first 1 KiB."""
    tombstone: bool = False
    """The record had no value at all (``null``: a Kafka tombstone), not an empty one."""

    def exact_key(self) -> bytes | None:
        """The record's key as it was, but for ``key_clipped``."""
        if self.key_base64 is not None:
            return self.key_base64
        return None if self.key is None else self.key.encode()

    def exact_original(self) -> bytes | None:
        """The record's value as it was (``None`` for a tombstone), but for
        ``original_clipped``; check it against ``original_sha256`` before trusting it: a
        letter written before ``original_base64`` existed holds U+FFFD where the bytes were
        not UTF-8."""
        if self.tombstone:
            return None
        if self.original_base64 is not None:
            return self.original_base64
        return self.original.encode()

    def exact_headers(self) -> list[tuple[str, bytes | None]]:
        """The record's headers as they were, in order, but for ``headers_clipped``."""
        if self.headers_base64 is not None:
            return list(self.headers_base64)
        return [(name, value.encode()) for name, value in self.headers.items()]


# How analytics counts the processor's work: each document answered (or dead-lettered) is a run
# of the workflow ``kafka_llm_processor.<task>``, identified by its key and source offset; the
# processor's LLM calls carry the same ids, so their cost lands on that run.
PROCESSOR_WORKFLOW = "kafka_llm_processor"


def processor_workflow_id(task: str) -> str:
    return f"{PROCESSOR_WORKFLOW}.{task}"


def processor_run_id(key: str, source_offset: str) -> str:
    """``source_offset`` is ``topic/partition/offset``, as in :class:`DocumentResult`."""
    return f"{key}@{source_offset}"[:128]
