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
    """The original message with why it could not be processed: all of it up to 64 KiB, else
    its first 64 KiB (``original_clipped``), and always its full size and sha256, so that an
    envelope always fits the broker's limit. Letters written before those three fields existed
    read with their defaults."""

    error: str
    error_type: str
    attempts: int
    topic: str
    partition: int
    offset: int
    key: str | None
    original: str
    original_bytes: int | None = None
    """The original's full size in bytes."""
    original_sha256: str | None = None
    """Hex sha256 of the whole original, to match it against the source topic or a spill."""
    original_clipped: bool = False
    """``original`` holds only the original's first bytes."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    failed_at: datetime


# How analytics counts the processor's work: each document answered (or dead-lettered) is a run
# of the workflow ``kafka_llm_processor.<task>``, identified by its key and source offset; the
# processor's LLM calls carry the same ids, so their cost lands on that run.
PROCESSOR_WORKFLOW = "kafka_llm_processor"


def processor_workflow_id(task: str) -> str:
    return f"{PROCESSOR_WORKFLOW}.{task}"


def processor_run_id(key: str, source_offset: str) -> str:
    """``source_offset`` is ``topic/partition/offset``, as in :class:`DocumentResult`."""
    return f"{key}@{source_offset}"[:128]
