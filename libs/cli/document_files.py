"""Financial documents from files: JSON as they are (one document or a list), a PDF's, an HTML
page's or a text file's words as one document.

A filing reaches an operator as a PDF, as HTML (EDGAR's 10-K, 10-Q and 8-K are inline-XBRL
HTML) or as text, not as PAS's JSON: its text becomes the document's content (a PDF's pages one
after another, each a paragraph; a scan, with no text to take, is refused; an HTML page as a
browser shows it, hidden parts left out and tables in rows), its title the PDF's or the page's
own, else the file's first line, its source the file's name, its date the file's. Long ones are
fine: the processor reads a document longer than its model's context in parts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import lxml.etree
import lxml.html
import msgspec
from inscriptis import Inscriptis
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from libs.common.schemas.documents import DocumentType, FinancialDocument, Task

_decode_json = msgspec.json.Decoder(FinancialDocument | list[FinancialDocument]).decode
_NOT_IN_IDS = re.compile(r"[^A-Za-z0-9_.:-]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_LINE_END_SPACES = re.compile(r"[ \t]+\n")
_HTML_SUFFIXES = frozenset({".htm", ".html", ".xhtml"})
# "strict": no indentation made up for blocks (a model reads spaces as tokens); tables keep
# their columns either way.
_HTML_LAYOUT = ParserConfig(css=CSS_PROFILES["strict"])
MAX_CONTENT_CHARS = 1_048_576
"""A document's content at most (what a Kafka message carries by default)."""


@dataclass(frozen=True)
class Describing:
    """What a file does not say about itself: the task asked, its type, its publication."""

    task: Task
    doc_type: DocumentType
    published_at: datetime | None = None
    """None: the file's modification time."""


READABLE_SUFFIXES = frozenset({".json", ".pdf", ".txt", ".md", *_HTML_SUFFIXES})
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
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        title, text = _pdf(path)
    elif suffix in _HTML_SUFFIXES:
        title, text = _html(path)
    else:
        title, text = _text(path)
    content = _BLANK_LINES.sub("\n\n", _LINE_END_SPACES.sub("\n", text)).strip()
    if not content:
        scanned = " (a scanned PDF has only images)" if suffix == ".pdf" else ""
        raise click.ClickException(f"{path}: no text in it{scanned}")
    if len(content) > MAX_CONTENT_CHARS:
        raise click.ClickException(
            f"{path}: {len(content):,} characters of text, more than a document holds "
            f"({MAX_CONTENT_CHARS:,}); send it in pieces"
        )
    first_line = content.split("\n", 1)[0].strip()
    published = describing.published_at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return FinancialDocument(
        doc_id=_doc_id(path, content),
        doc_type=describing.doc_type,
        title=(title or first_line or path.stem)[:500],
        content=content,
        source=path.name[:500],
        published_at=published,
        task=describing.task,
    )


def _doc_id(path: Path, content: str) -> str:
    """The file's name and its text's digest: the same file sent again has the same id."""
    stem = _NOT_IN_IDS.sub("-", path.stem).strip("-")[:100] or "document"
    return f"{stem}-{hashlib.sha256(content.encode()).hexdigest()[:12]}"


def _pdf(path: Path) -> tuple[str | None, str]:
    try:
        reader = PdfReader(path)
        pages = [page.extract_text() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PdfReadError, OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not a PDF that can be read: {exc}") from exc
    return (title.strip() if isinstance(title, str) else None), "\n\n".join(pages)


def _html(path: Path) -> tuple[str | None, str]:
    """The page's text as a browser lays it out, and its ``<title>``. Read as bytes, so lxml
    takes the encoding the page declares (EDGAR's often start with an XML declaration)."""
    try:
        page = lxml.html.fromstring(path.read_bytes())
    except (lxml.etree.ParserError, OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not an HTML page that can be read: {exc}") from exc
    title = " ".join((page.findtext(".//title") or "").split())
    return title or None, Inscriptis(page, _HTML_LAYOUT).get_text()


def _text(path: Path) -> tuple[None, str]:
    try:
        return None, path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); send JSON, a PDF, "
            "an HTML page or a text file"
        ) from exc
