"""Document analysis of a document longer than the model's context (the real embedded model,
2,048 tokens, through its Ollama-compatible API): read in parts, its summary and key points
still the document's own. The input takes such documents: up to 200,000 characters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from libs.common.clauses import clauses
from libs.common.grounding import Source, unfounded_numbers
from services.langgraph_runner.workflows.document_analysis import CLAUSE_CHARS
from tests.support.annual_report import ANNUAL_REPORT_TITLE, annual_report_text
from tests.support.asgi_server import serve_asgi
from tests.support.ollama_chat import OllamaChat


@pytest.mark.timeout(600)
async def test_a_document_longer_than_the_context_is_analysed_in_parts(
    llm_runner: AsyncTestClient[Any],
) -> None:
    content = annual_report_text()
    document = {"title": ANNUAL_REPORT_TITLE, "doc_type": "sec_filing", "content": content}

    response = await llm_runner.post(
        "/workflows/document_analysis/runs?wait=true", json={"input": document}
    )

    result = response.json()
    assert result["status"] == "success", result["error"]
    output = result["output"]
    assert output["parts"] >= 2
    # Every part answered, and each level's summaries summarised again: more calls than parts.
    assert result["usage"]["calls"] > output["parts"]
    source = Source.of(f"{ANNUAL_REPORT_TITLE}\n{content}")
    for text in (output["summary"], *output["key_points"]):
        assert unfounded_numbers(text, source) == [], text
    assert output["status"] == "ok"
    assert output["sentiment"] in {"positive", "neutral", "negative"}
    # Key points are clauses of the document, the first part's lede first.
    offered = clauses(content, max_chars=CLAUSE_CHARS)
    assert 1 <= len(output["key_points"]) <= 3
    assert set(output["key_points"]) <= set(offered)
    assert output["key_points"][0] == offered[0]
    assert output["word_count"] == len(content.split())


async def test_a_filing_far_longer_than_the_old_limit_is_taken(
    runner: AsyncTestClient[Any],
) -> None:
    """Taken, not refused (20,000 characters were the most before reading in parts); the run
    itself is the test above's."""
    content = "\n\n".join([annual_report_text()] * 10)  # about 104,000 characters

    response = await runner.post(
        "/workflows/document_analysis/runs", json={"input": {"content": content}}
    )

    assert response.status_code == 202, response.text
    await runner.post(f"/runs/{response.json()['run_id']}/cancel")


async def test_behind_ollama_a_long_document_is_refused_and_read_in_parts_not_cut(
    make_runner: Callable[..., Any],
) -> None:
    """Ollama cuts a prompt longer than its context and answers 200 from what is left unless
    the request says ``truncate: false``; the runner says so, so the document is read in parts.

    Ollama cannot run here: the model is a stand-in that answers ``POST /api/chat`` in
    Ollama's documented wire format and treats a long prompt as Ollama does (it counts words
    as tokens; ``tests/support/ollama_chat.py``)."""
    sentence = "Apple reported quarterly revenue of $94.9 billion, up 6 percent year over year."
    paragraph = " ".join([sentence] * 20)  # 260 words
    content = f"{paragraph}\n\n{paragraph}"
    analysis = {
        "summary": "Revenue rose 6 percent to $94.9 billion.",
        "sentiment": "positive",
        "key_points": [sentence.removesuffix(".")],
    }
    # The instructions and one paragraph fit; the instructions and both do not.
    model = OllamaChat([json.dumps(analysis)], context=500)

    with serve_asgi(model) as url:
        runner = await make_runner(llm_url=url)
        response = await runner.post(
            "/workflows/document_analysis/runs?wait=true", json={"input": {"content": content}}
        )

    result = response.json()
    assert result["status"] == "success", result["error"]
    assert result["output"]["parts"] == 2
    assert result["output"]["summary"] == analysis["summary"]
    assert model.cut == 0
    assert all(request["truncate"] is False for request in model.requests)
    # Refused whole, then both halves and their summaries answered.
    assert len(model.requests) == 4
