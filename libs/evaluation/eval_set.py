"""The evaluation set: documents with the answers an analyst expects
(``libs/evaluation/data/documents.jsonl``, described in its README)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

from libs.common.schemas.documents import (
    DocumentType,
    FinancialDocument,
    SentimentLabel,
    Task,
)

DEFAULT_SET = Path(__file__).resolve().parent / "data" / "documents.jsonl"

Split = Literal["dev", "heldout"]


class ExpectedFigure(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    value: str


class EvalDocument(msgspec.Struct, kw_only=True, frozen=True):
    doc_id: str
    doc_type: DocumentType
    title: str
    source: str
    published_at: datetime
    content: str
    expected_key_figures: list[ExpectedFigure]
    expected_sentiment: SentimentLabel
    reference_summary: str
    split: Split

    def as_task(self, task: Task) -> FinancialDocument:
        """The document as the processor receives it for ``task`` (expectations left out)."""
        return FinancialDocument(
            doc_id=self.doc_id,
            doc_type=self.doc_type,
            title=self.title,
            content=self.content,
            source=self.source,
            published_at=self.published_at,
            task=task,
        )


class EvalSetError(Exception):
    """The evaluation set cannot be read (missing file, a line that is not a document)."""


_decode = msgspec.json.Decoder(EvalDocument).decode


def load(path: Path, split: Split | Literal["all"] = "dev") -> list[EvalDocument]:
    """The set's documents in file order, those of ``split`` only unless it is ``all``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalSetError(f"cannot read the evaluation set {path}: {exc}") from exc
    documents = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            documents.append(_decode(line))
        except msgspec.DecodeError as exc:
            raise EvalSetError(f"{path}:{number} is not an evaluation document: {exc}") from exc
    return [d for d in documents if split in ("all", d.split)]
