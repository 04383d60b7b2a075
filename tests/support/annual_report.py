"""A long filing for the tests that read documents longer than a model's context: an annual
report of up to eighteen segments, a paragraph each, every figure named and written once."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.common.schemas.documents import FinancialDocument, Task

ANNUAL_REPORT_TITLE = "Northwind Holdings annual report (fiscal 2025)"

SEGMENTS = [
    ("Cloud", 31.2, 12, 41), ("Devices", 18.7, -3, 22), ("Payments", 9.4, 17, 35),
    ("Advertising", 14.1, 6, 29), ("Gaming", 5.3, -8, 18), ("Enterprise", 11.6, 9, 33),
    ("Security", 3.9, 21, 26), ("Search", 22.8, 4, 47), ("Health", 2.2, 31, 12),
    ("Mobility", 7.5, 2, 15), ("Retail", 12.9, -1, 9), ("Media", 4.6, 5, 19),
    ("Logistics", 6.1, 3, 11), ("Energy", 8.3, -5, 24), ("Insurance", 10.2, 7, 31),
    ("Lending", 5.8, 11, 38), ("Travel", 1.9, 26, 8), ("Education", 1.4, 14, 21),
]  # fmt: skip
"""Each segment's name, revenue (billions), change from the prior year (percent), margin."""


def annual_report_text(segments: int = len(SEGMENTS)) -> str:
    """The first ``segments``, about 580 characters (110 tokens) each: all eighteen are more
    than a 2,048-token context holds with an answer of 384 tokens, eight more than a 1,024-token
    one does; half of either fits."""
    return "\n\n".join(
        f"{name} segment revenue was ${revenue} billion for the year, "
        f"{'up' if change >= 0 else 'down'} {abs(change)} percent from the prior year. "
        f"Operating margin in {name} was {margin} percent, as the segment shifted its spending "
        "toward products with recurring subscriptions and longer customer contracts. "
        f"Management expects {name} demand to stay steady through the coming fiscal year, with "
        "pricing held and costs watched closely across every region the segment serves. The "
        "segment's order backlog and the renewals of its largest customers were described as "
        "healthy, and its hiring plans were left unchanged for the next two quarters."
        for name, revenue, change, margin in SEGMENTS[:segments]
    )


def annual_report(
    doc_id: str, task: Task, *, segments: int = len(SEGMENTS), copies: int = 1
) -> FinancialDocument:
    """:func:`annual_report_text` as a document for the processor (``copies`` times over)."""
    return FinancialDocument(
        doc_id=doc_id,
        doc_type="sec_filing",
        title=ANNUAL_REPORT_TITLE,
        content="\n\n".join([annual_report_text(segments)] * copies),
        source="Northwind Holdings 10-K",
        published_at=datetime(2025, 11, 30, tzinfo=UTC),
        task=task,
    )
