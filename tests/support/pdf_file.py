"""A PDF of text pages written byte by byte (PDF 1.4: a catalog, pages in Helvetica, an info
dictionary with the title, the cross-reference table), for tests that read PDFs as a user's
files are read, without a PDF writer among PAS's dependencies."""

from __future__ import annotations

from pathlib import Path


def _escaped(line: str) -> bytes:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def write_pdf(path: Path, pages: list[list[str]], title: str) -> Path:
    """``pages``: each page's lines, top down."""
    font = 3 + 2 * len(pages)
    info = font + 1
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(len(pages)))
        + b"] /Count %d >>" % len(pages),
    ]
    for index, lines in enumerate(pages):
        text = (
            b"BT /F1 11 Tf 72 740 Td 14 TL "
            + b" ".join(b"(" + _escaped(line) + b") '" for line in lines)
            + b" ET"
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * index, font)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects.append(b"<< /Title (" + _escaped(title) + b") >>")
    assert len(objects) == info
    body, offsets = b"%PDF-1.4\n", []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (len(objects) + 1, info)
    body += b"startxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(body)
    return path
