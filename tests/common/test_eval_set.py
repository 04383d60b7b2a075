"""The evaluation set (libs/evaluation/data/documents.jsonl) is well-formed: every document is
a valid PAS FinancialDocument, every expected figure is quoted verbatim from its content, every
number in a reference summary comes from the content, and the set is balanced enough to score
on."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec
import pytest

from libs.common.schemas.documents import DocumentType, FinancialDocument, SentimentLabel
from libs.evaluation.eval_set import DEFAULT_SET

EVAL_SET = DEFAULT_SET

# A number as written in prose: digits with thousands separators and decimals ("1,250", "4.82");
# "$", "%", "bn" and signs around it are the normaliser's business, not the faithfulness check's.
NUMBER = re.compile(r"\d[\d,.]*\d|\d")


class ExpectedFigure(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    value: Annotated[str, msgspec.Meta(min_length=1)]


class EvalDocument(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    doc_id: str
    doc_type: DocumentType
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    source: Annotated[str, msgspec.Meta(min_length=1)]
    published_at: datetime
    content: str
    expected_key_figures: Annotated[list[ExpectedFigure], msgspec.Meta(min_length=2, max_length=5)]
    expected_sentiment: SentimentLabel
    reference_summary: Annotated[str, msgspec.Meta(min_length=1)]
    split: Literal["dev", "heldout"]


def load_eval_set() -> list[EvalDocument]:
    decoder = msgspec.json.Decoder(EvalDocument)
    lines = EVAL_SET.read_bytes().splitlines()
    return [decoder.decode(line) for line in lines if line.strip()]


EVAL_DOCUMENTS = load_eval_set()


def test_set_is_large_with_unique_ids_and_every_document_type() -> None:
    assert len(EVAL_DOCUMENTS) >= 48
    ids = [doc.doc_id for doc in EVAL_DOCUMENTS]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    assert {doc.doc_type for doc in EVAL_DOCUMENTS} == set(get_args(DocumentType))


def test_labels_are_balanced_and_heldout_is_large_enough() -> None:
    labels = Counter(doc.expected_sentiment for doc in EVAL_DOCUMENTS)
    for label in get_args(SentimentLabel):
        assert labels[label] >= 0.25 * len(EVAL_DOCUMENTS), labels
    heldout = [doc for doc in EVAL_DOCUMENTS if doc.split == "heldout"]
    assert len(heldout) >= 12
    # Scored on its own, the held-out part still needs every label.
    assert {doc.expected_sentiment for doc in heldout} == set(get_args(SentimentLabel))


@pytest.mark.parametrize("doc", EVAL_DOCUMENTS, ids=lambda doc: doc.doc_id)
def test_document_is_a_financial_document(doc: EvalDocument) -> None:
    fields = {
        "doc_id": doc.doc_id,
        "doc_type": doc.doc_type,
        "title": doc.title,
        "content": doc.content,
        "source": doc.source,
        "published_at": doc.published_at,
    }
    financial = msgspec.convert(fields, FinancialDocument)
    assert financial.doc_id == doc.doc_id
    assert financial.published_at.tzinfo is not None
    assert 2025 <= financial.published_at.year <= 2026


@pytest.mark.parametrize("doc", EVAL_DOCUMENTS, ids=lambda doc: doc.doc_id)
def test_content_length_and_figures_are_verbatim(doc: EvalDocument) -> None:
    assert 60 <= len(doc.content.split()) <= 160
    for figure in doc.expected_key_figures:
        assert figure.value in doc.content, figure
        assert NUMBER.search(figure.value), figure


@pytest.mark.parametrize("doc", EVAL_DOCUMENTS, ids=lambda doc: doc.doc_id)
def test_reference_summary_is_short_and_faithful(doc: EvalDocument) -> None:
    assert len(doc.reference_summary.split()) <= 60
    content_numbers = set(NUMBER.findall(doc.content))
    invented = [n for n in NUMBER.findall(doc.reference_summary) if n not in content_numbers]
    assert not invented, invented
