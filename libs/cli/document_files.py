"""Financial documents from files: JSON as they are (one document or a list), any other
file's text as one document.

A filing reaches an operator as a PDF, as HTML (EDGAR's 10-K, 10-Q and 8-K are inline-XBRL
HTML), as a Word document, an e-mail or text, not as PAS's JSON: its text, as a reader sees it
(``file_texts.py``), becomes the document's content; its title the one the file gives itself,
else its first line; its source the file's name; its date the e-mail's, else the file's. Long
ones are fine: the processor reads a document longer than its model's context in parts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec

from libs.cli.file_texts import READERS, file_text
from libs.common.schemas.documents import DocumentType, FinancialDocument, Task

_decode_json = msgspec.json.Decoder(FinancialDocument | list[FinancialDocument]).decode
_NOT_IN_IDS = re.compile(r"[^A-Za-z0-9_.:-]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_LINE_END_SPACES = re.compile(r"[ \t]+\n")
MAX_CONTENT_CHARS = 1_048_576
"""A document's content at most (what a Kafka message carries by default)."""


@dataclass(frozen=True)
class Describing:
    """What a file does not say about itself: the task asked, its type, its publication."""

    task: Task
    doc_type: DocumentType
    published_at: datetime | None = None
    """None: the date the file carries (an e-mail's), else its modification time."""


READABLE_SUFFIXES = frozenset({".json", *READERS})
"""What a directory's files are sent as documents: the kinds read here (a named file of any
other kind is read as text)."""


def files_in(paths: tuple[Path, ...]) -> list[Path]:
    """``paths`` with each directory replaced by the readable files under it, in name order
    (hidden ones left out)."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        found += sorted(
            each
            for each in path.rglob("*")
            if each.is_file()
            and each.suffix.lower() in READABLE_SUFFIXES
            and not any(part.startswith(".") for part in each.relative_to(path).parts)
        )
    return found


def read_documents(paths: tuple[Path, ...], describing: Describing) -> list[FinancialDocument]:
    """Each file's documents (a directory's readable files); a file that is not one is an
    error naming it and what is wrong."""
    found: list[FinancialDocument] = []
    for path in files_in(paths):
        if path.suffix.lower() == ".json":
            try:
                decoded = _decode_json(path.read_bytes())
            except msgspec.DecodeError as exc:
                raise click.ClickException(f"{path}: not a financial document: {exc}") from exc
            found += decoded if isinstance(decoded, list) else [decoded]
        else:
            found.append(_document_of(path, describing))
    return found


def _document_of(path: Path, describing: Describing) -> FinancialDocument:
    read = file_text(path)
    content = _BLANK_LINES.sub("\n\n", _LINE_END_SPACES.sub("\n", read.text)).strip()
    if not content:
        scanned = " (a scanned PDF has only images)" if path.suffix.lower() == ".pdf" else ""
        raise click.ClickException(f"{path}: no text in it{scanned}")
    if len(content) > MAX_CONTENT_CHARS:
        raise click.ClickException(
            f"{path}: {len(content):,} characters of text, more than a document holds "
            f"({MAX_CONTENT_CHARS:,}); send it in pieces"
        )
    first_line = content.split("\n", 1)[0].strip()
    published = (
        describing.published_at or read.dated or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    )
    return FinancialDocument(
        doc_id=_doc_id(path, content),
        doc_type=describing.doc_type,
        title=(read.title or first_line or path.stem)[:500],
        content=content,
        source=path.name[:500],
        published_at=published,
        task=describing.task,
    )


def _doc_id(path: Path, content: str) -> str:
    """The file's name and its text's digest: the same file sent again has the same id."""
    stem = _NOT_IN_IDS.sub("-", path.stem).strip("-")[:100] or "document"
    return f"{stem}-{hashlib.sha256(content.encode()).hexdigest()[:12]}"
