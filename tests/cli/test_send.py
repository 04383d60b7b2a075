"""``pas send`` to a real processor on a fake OpenAI-compatible backend (its documented wire
format): documents from files (JSON, PDF, HTML, Word, e-mail, text) or the samples, and their
results when asked to wait."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import docx
import msgspec

from libs.common.schemas.documents import FinancialDocument
from services.kafka_llm_processor.send_samples import documents
from tests.cli.conftest import pas
from tests.kafka_llm_processor.conftest import Topics
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.pdf_file import write_pdf
from tests.support.topic_reader import read_from_start


def processor_topics(kafka_bootstrap: str, topics: Topics) -> dict[str, str]:
    """``pas``'s configuration: the broker and the test's processor topics."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "INPUT_TOPIC": topics.input,
        "OUTPUT_TOPIC": topics.output,
        "DLQ_TOPIC": topics.dlq,
    }


def documents_sent(kafka_bootstrap: str, topics: Topics, want: int) -> list[FinancialDocument]:
    """The documents on the processor's input topic, as ``pas send`` put them there."""
    return asyncio.run(
        read_from_start(
            kafka_bootstrap,
            topics.input,
            lambda record: msgspec.json.decode(record.value or b"", type=FinancialDocument),
            want=want,
            timeout_s=30,
        )
    )


def test_send_files_and_samples_and_wait_for_their_results(
    kafka_bootstrap: str, topics: Topics, start_processor: Any, tmp_path: Path
) -> None:
    [doc] = documents(1)
    given = tmp_path / "doc.json"
    given.write_bytes(msgspec.json.encode(doc))
    env = processor_topics(kafka_bootstrap, topics)
    with serve_asgi(OpenAIResponder()) as url:
        start_processor(f"{url}/v1")
        sent = pas("send", str(given), "--sample", "2", "--task", "summary", "--wait", env=env)

    assert sent.returncode == 0, sent.stdout + sent.stderr
    lines = sent.stdout.splitlines()
    assert len([line for line in lines if line.startswith("sent ")]) == 3
    assert f"sent {doc.doc_id} as {topics.input}/" in sent.stdout
    # describe(): one line per result, with the task and status, then the answer.
    answered = [line for line in lines if "[summary, ok," in line]
    assert len(answered) == 3
    assert any(line.startswith(doc.doc_id) for line in answered)


def test_a_bad_file_is_named_with_its_field(tmp_path: Path) -> None:
    [doc] = documents(1)
    bad = json.loads(msgspec.json.encode(doc))
    bad["title"] = 42
    given = tmp_path / "bad.json"
    given.write_text(json.dumps([json.loads(msgspec.json.encode(doc)), bad]))

    shown = pas("send", str(given), env={})

    assert shown.returncode == 1
    assert str(given) in shown.stderr
    assert "$[1].title" in shown.stderr


def test_a_pdf_and_a_text_file_are_sent_as_documents_of_their_text(
    kafka_bootstrap: str, topics: Topics, start_processor: Any, tmp_path: Path
) -> None:
    pdf = write_pdf(
        tmp_path / "Northwind 10-K (2025).pdf",
        [
            ["Revenue was $31.2 billion, up 12 percent.", "Cloud led the growth."],
            ["Net income was $4.1 billion."],
        ],
        title="Northwind Holdings annual report",
    )
    memo = tmp_path / "desk-memo.txt"
    memo.write_text("Rates desk memo\n\n\n\nThe 10-year yield rose 25 basis points.\n")
    env = processor_topics(kafka_bootstrap, topics)
    with serve_asgi(OpenAIResponder()) as url:
        start_processor(f"{url}/v1")
        sent = pas(
            "send", str(pdf), str(memo), "--doc-type", "news", "--published", "2025-11-30",
            "--wait", env=env,
        )  # fmt: skip
    docs = documents_sent(kafka_bootstrap, topics, want=2)

    assert sent.returncode == 0, sent.stdout + sent.stderr
    by_source = {doc.source: doc for doc in docs}
    report, note = by_source[pdf.name], by_source[memo.name]
    # The PDF's pages one after another, its title its own; the text file's first line.
    assert report.content == (
        "Revenue was $31.2 billion, up 12 percent.\nCloud led the growth.\n\n"
        "Net income was $4.1 billion."
    )
    assert report.title == "Northwind Holdings annual report"
    assert report.doc_id.startswith("Northwind-10-K-2025-")
    assert note.content == "Rates desk memo\n\nThe 10-year yield rose 25 basis points."
    assert note.title == "Rates desk memo"
    for doc in docs:
        assert (doc.task, doc.doc_type) == ("summary", "news")
        assert doc.published_at == datetime(2025, 11, 30, tzinfo=UTC)
        assert f"sent {doc.doc_id} as {topics.input}/" in sent.stdout
    assert len([line for line in sent.stdout.splitlines() if "[summary, ok," in line]) == 2


FILING_HTML = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:ix="http://www.xbrl.org/2013/inlineXBRL">
<head><title>nwnd-20250927
  10-K</title><style>p {margin: 0}</style><script>var tracked = 1;</script></head>
<body>
<div style="display:none"><ix:header><ix:hidden>
<ix:nonNumeric name="dei:AmendmentFlag">false</ix:nonNumeric>0000320193 FY</ix:hidden>
</ix:header></div>
<div><span style="font-weight:700">FORM 10-K</span></div>
<p>Northwind&#8217;s net sales were $<ix:nonFraction name="us-gaap:Revenues">31.2</ix:nonFraction>
billion, up 12&#160;percent.</p>
<table>
<tr><td>Net sales</td><td>$</td><td>31,200</td><td>$</td><td>27,857</td></tr>
<tr><td>Net income</td><td>$</td><td>4,100</td><td>$</td><td>3,650</td></tr>
</table>
<p>Cloud led the growth.<br/>Devices were flat.</p>
</body></html>
"""


def test_an_html_filing_is_sent_as_the_text_a_reader_sees(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """An EDGAR-style inline-XBRL page: its hidden XBRL header, style and script left out, its
    entities read, its table's rows one to a line, cells in order."""
    page = tmp_path / "nwnd-20250927.htm"
    page.write_text(FILING_HTML, encoding="utf-8")
    older = tmp_path / "memo.html"
    # No title, and a declared encoding other than UTF-8.
    older.write_bytes(
        b'<html><head><meta charset="windows-1252"></head><body>'
        b"<p>Caf\xe9 chain \x93Northwind\x94 opened 40 stores.</p></body></html>"
    )

    sent = pas("send", str(page), str(older), env=processor_topics(kafka_bootstrap, topics))
    docs = documents_sent(kafka_bootstrap, topics, want=2)

    assert sent.returncode == 0, sent.stdout + sent.stderr
    by_source = {doc.source: doc for doc in docs}
    filing, memo = by_source[page.name], by_source[older.name]
    assert filing.title == "nwnd-20250927 10-K"
    lines = filing.content.splitlines()
    assert lines[0] == "FORM 10-K"
    assert "Northwind\u2019s net sales were $31.2 billion, up 12 percent." in filing.content
    assert [line.split() for line in lines if line.startswith("Net ")] == [
        ["Net", "sales", "$", "31,200", "$", "27,857"],
        ["Net", "income", "$", "4,100", "$", "3,650"],
    ]
    assert filing.content.endswith("Cloud led the growth.\nDevices were flat.")
    for hidden in ("AmendmentFlag", "0000320193", "tracked", "margin"):
        assert hidden not in filing.content
    assert memo.content == "Caf\u00e9 chain \u201cNorthwind\u201d opened 40 stores."
    assert memo.title == memo.content


def write_docx(path: Path) -> Path:
    """A Word document: a title in its properties, a heading, a paragraph, a table with a
    merged header cell, a closing paragraph."""
    document = docx.Document()
    document.core_properties.title = "Northwind credit note"
    document.add_heading("Credit view", level=1)
    document.add_paragraph("Spreads tightened 15 basis points on the quarter.")
    table = document.add_table(rows=3, cols=3)
    header = table.cell(0, 0).merge(table.cell(0, 2))
    header.text = "Issuance (USD bn)"
    for row, cells in enumerate((["2024", "1.2", "IG"], ["2025", "1.8", "IG"]), start=1):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    document.add_paragraph("We stay overweight.")
    document.save(str(path))
    return path


def write_eml(
    path: Path, *, html_only: bool, sender: str | None = "research@broker.example"
) -> Path:
    message = EmailMessage()
    if sender is not None:
        message["From"] = sender
    message["To"] = "desk@pas.example"
    message["Subject"] = "Morning note: rates"
    message["Date"] = "Thu, 04 Dec 2025 07:30:00 +0100"
    html = (
        "<html><body><p>The 10-year yield rose <b>12 bp</b>.</p><p>Curve steeper.</p></body></html>"
    )
    if html_only:
        message.set_content(html, subtype="html")
    else:
        message.set_content("The 10-year yield rose 12 bp.\n\nCurve steeper.\n")
        message.add_alternative(html, subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    path.write_bytes(message.as_bytes())
    return path


def test_a_word_document_and_e_mails_are_sent_as_documents_of_their_text(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    note = write_docx(tmp_path / "credit-note.docx")
    plain = write_eml(tmp_path / "plain.eml", html_only=False)
    html = write_eml(tmp_path / "html.eml", html_only=True)
    draft = write_eml(tmp_path / "draft.eml", html_only=False, sender=None)  # saved unsent

    sent = pas(
        "send",
        *(str(path) for path in (note, plain, html, draft)),
        env=processor_topics(kafka_bootstrap, topics),
    )
    docs = documents_sent(kafka_bootstrap, topics, want=4)

    assert sent.returncode == 0, sent.stdout + sent.stderr
    by_source = {doc.source: doc for doc in docs}
    word, mail, page = by_source[note.name], by_source[plain.name], by_source[html.name]
    assert by_source[draft.name].content == mail.content
    assert word.title == "Northwind credit note"
    assert word.content == (
        "Credit view\n\nSpreads tightened 15 basis points on the quarter.\n\n"
        "Issuance (USD bn)\n2024  1.2  IG\n2025  1.8  IG\n\nWe stay overweight."
    )
    assert mail.content == "The 10-year yield rose 12 bp.\n\nCurve steeper."
    assert page.content == "The 10-year yield rose 12 bp.\n\nCurve steeper."
    for message in (mail, page):
        assert message.title == "Morning note: rates"
        assert message.published_at == datetime(2025, 12, 4, 6, 30, tzinfo=UTC)


def test_a_directory_sends_the_readable_files_under_it(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """Text, PDF, HTML and JSON files at any depth, in name order; hidden ones and other
    kinds left where they are."""
    filings = tmp_path / "filings"
    (filings / "nwnd" / ".drafts").mkdir(parents=True)
    (filings / "a-memo.txt").write_text("Rates desk memo\n\nThe 10-year yield rose.\n")
    (filings / "nwnd" / "nwnd-20250927.htm").write_text(FILING_HTML)
    (filings / "nwnd" / ".drafts" / "draft.txt").write_text("not yet")
    (filings / "nwnd" / "model.xlsx").write_bytes(b"PK\x03\x04")

    sent = pas("send", str(filings), env=processor_topics(kafka_bootstrap, topics))
    docs = documents_sent(kafka_bootstrap, topics, want=2)

    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sorted(doc.source for doc in docs) == ["a-memo.txt", "nwnd-20250927.htm"]
    assert len([line for line in sent.stdout.splitlines() if line.startswith("sent ")]) == 2


def test_a_text_too_large_for_a_record_is_named_before_anything_is_sent(tmp_path: Path) -> None:
    """Under the characters a document holds, over the bytes a Kafka record takes (each "é" is
    two): it was sent after the files before it and failed with a traceback."""
    small = tmp_path / "small.txt"
    small.write_text("Quarterly revenue rose 4%.\n")
    large = tmp_path / "large.txt"
    large.write_text("é" * 600_000)

    shown = pas("send", str(small), str(large), env={})  # no broker: refused before sending

    assert shown.returncode == 1
    assert "bytes as a record, more than Kafka takes (1,000,000)" in shown.stderr
    assert "large" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_a_file_with_no_text_or_not_utf8_is_named_with_why(tmp_path: Path) -> None:
    scan = write_pdf(tmp_path / "scan.pdf", [[]], title="A scan")
    binary = tmp_path / "figures.xls"
    binary.write_bytes(bytes([0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1]))
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body><div style='display:none'>hidden</div></body></html>")
    nothing = tmp_path / "nothing.htm"
    nothing.write_bytes(b"")

    empty = pas("send", str(scan), env={})
    unreadable = pas("send", str(binary), env={})
    empty_page = pas("send", str(blank), env={})
    no_page = pas("send", str(nothing), env={})
    not_word = tmp_path / "note.docx"
    not_word.write_bytes(b"not a zip")
    not_mail = tmp_path / "note.eml"
    not_mail.write_text("just a line\n")
    no_word = pas("send", str(not_word), env={})
    no_mail = pas("send", str(not_mail), env={})

    assert empty.returncode == 1
    assert f"{scan}: no text in it" in empty.stderr
    assert unreadable.returncode == 1
    assert f"{binary}: not UTF-8 text" in unreadable.stderr
    assert empty_page.returncode == 1
    assert f"{blank}: no text in it" in empty_page.stderr
    assert no_page.returncode == 1
    assert f"{nothing}: not an HTML page that can be read" in no_page.stderr
    assert no_word.returncode == 1
    assert f"{not_word}: not a Word document that can be read" in no_word.stderr
    assert no_mail.returncode == 1
    assert f"{not_mail}: not an e-mail (none of From, To, Subject" in no_mail.stderr
