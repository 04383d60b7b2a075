"""Ids a service accepts are the ids its published JSON Schema accepts.

The schema's ``pattern`` is read by ECMA rules (where ``\\w`` is ASCII), the server's by
Python's (where ``\\w`` takes any Unicode letter): an id written with ``\\w`` was taken by the
server and refused by its own schema."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from libs.common.schemas.documents import FinancialDocument
from libs.common.schemas.workflows import EventId, RunId

IDS = ["doc-1", "AAPL_2023.q4:1", "naïve", "résumé-1", "株式-7", "doc 1", "doc/1", "Ⅻ", "٣"]


def _document(doc_id: str) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "doc_type": "earnings_report",
        "title": "t",
        "content": "c",
        "source": "s",
        "published_at": "2026-01-01T00:00:00Z",
    }


def _accepted(kind: Any, value: Any) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


def _schema_pattern(kind: Any) -> str:
    schema = msgspec.json.schema(kind)
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return str(schema["$defs"][name]["properties"]["doc_id"]["pattern"])
    return str(schema["pattern"])


@pytest.mark.parametrize(
    ("kind", "wrap"),
    [
        (FinancialDocument, _document),
        (EventId, lambda value: value),
        (RunId, lambda value: value),
    ],
    ids=["doc_id", "event_id", "run_id"],
)
def test_the_server_takes_the_ids_its_published_schema_takes(kind: Any, wrap: Any) -> None:
    pattern = _schema_pattern(kind)
    for value in IDS:
        by_schema = re.search(pattern, value, re.ASCII) is not None
        assert _accepted(kind, wrap(value)) == by_schema, value
    assert _accepted(kind, wrap("doc-1"))
    assert not _accepted(kind, wrap("naïve"))
