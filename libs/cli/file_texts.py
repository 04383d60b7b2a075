"""A file's text as a reader sees it, by its kind: a PDF (pypdf), an HTML page (inscriptis),
a Word document (python-docx), an e-mail (the standard library's ``email``), or plain UTF-8
text. Each reader gives the text, the title the file gives itself, and the date it carries
(an e-mail's); a file that cannot be read is a ClickException naming it and why.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import click
import docx
import lxml.etree
import lxml.html
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from inscriptis import Inscriptis
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from pypdf import PdfReader
from pypdf.errors import PdfReadError

# "strict": no indentation made up for blocks (a model reads spaces as tokens); tables keep
# their columns either way.
_HTML_LAYOUT = ParserConfig(css=CSS_PROFILES["strict"])


@dataclass(frozen=True)
class FileText:
    text: str
    title: str | None = None
    """The title the file gives itself (a PDF's or Word file's properties, a page's
    ``<title>``, an e-mail's subject)."""
    dated: datetime | None = None
    """When the file says it was written (an e-mail's ``Date``)."""


def _pdf(path: Path) -> FileText:
    try:
        reader = PdfReader(path)
        pages = [page.extract_text() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PdfReadError, OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not a PDF that can be read: {exc}") from exc
    return FileText("\n\n".join(pages), title.strip() if isinstance(title, str) else None)


def html_text(markup: bytes | str) -> tuple[str, str | None]:
    """A page's text as a browser lays it out (hidden parts left out, tables in rows), and its
    ``<title>``. Bytes let lxml take the encoding the page declares (EDGAR's pages often start
    with an XML declaration)."""
    page = lxml.html.fromstring(markup)
    title = " ".join((page.findtext(".//title") or "").split())
    return Inscriptis(page, _HTML_LAYOUT).get_text(), title or None


def _html(path: Path) -> FileText:
    try:
        text, title = html_text(path.read_bytes())
    except (lxml.etree.ParserError, OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not an HTML page that can be read: {exc}") from exc
    return FileText(text, title)


def _table_rows(table: Table) -> Iterator[str]:
    """A Word table's rows, one a line, its cells in order (a merged cell once)."""
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            yield "  ".join(cells)


def _docx(path: Path) -> FileText:
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"{path}: not a Word document that can be read: {exc}") from exc
    blocks = [
        "\n".join(_table_rows(block)) if isinstance(block, Table) else block.text
        for block in document.iter_inner_content()
    ]
    title = (document.core_properties.title or "").strip()
    return FileText("\n\n".join(blocks), title or None)


MAIL_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version")
"""An e-mail has one of these at least (a draft saved unsent may have no From); any text parses
as a message, its first lines as headers if they look like some."""


def _eml(path: Path) -> FileText:
    """An e-mail's body (its plain text, else its HTML as a page), subject and date; its
    attachments are not read (send them as files of their own)."""
    try:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    except OSError as exc:
        raise click.ClickException(f"{path}: not an e-mail that can be read: {exc}") from exc
    if not isinstance(message, EmailMessage) or not any(message[name] for name in MAIL_HEADERS):
        raise click.ClickException(f"{path}: not an e-mail (none of {', '.join(MAIL_HEADERS)})")
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if isinstance(body, EmailMessage):
        content = body.get_content()
        text = html_text(content)[0] if body.get_content_subtype() == "html" else content
    dated = getattr(message["date"], "datetime", None)
    if isinstance(dated, datetime) and dated.tzinfo is None:  # "-0000": UTC, source unknown
        dated = dated.replace(tzinfo=UTC)
    return FileText(text, str(message["subject"] or "").strip() or None, dated)


def _plain(path: Path) -> FileText:
    try:
        return FileText(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); send JSON, a PDF, "
            "an HTML page, a Word document, an e-mail or a text file"
        ) from exc


READERS: dict[str, Callable[[Path], FileText]] = {
    ".pdf": _pdf,
    ".htm": _html,
    ".html": _html,
    ".xhtml": _html,
    ".docx": _docx,
    ".eml": _eml,
    ".txt": _plain,
    ".md": _plain,
}
"""How each kind of file is read, by suffix; any other is read as plain text."""


def file_text(path: Path) -> FileText:
    return READERS.get(path.suffix.lower(), _plain)(path)
