"""Health, /info (measured performance) and metrics of an LLM service; the spec's unit tests."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from litestar.testing import AsyncTestClient, TestClient

from tests.llm.conftest import CHAT, ON_THE_MODULES_LOOP
from tests.support.metrics_text import counted


async def test_info_fills_performance_from_served_requests(llm: AsyncTestClient[Any]) -> None:
    """A fresh service (``llm``): its /info has measured nothing before these requests."""
    before = (await llm.get("/info")).json()
    for _ in range(3):
        await llm.post("/chat/completions", json={**CHAT, "max_tokens": 12})
    after = (await llm.get("/info")).json()

    assert before["performance"]["avg_latency_ms"] is None
    assert before["model"]["quantization"] == "Q8_0"  # converted from the shipped Q4_1
    assert after["performance"]["requests_measured"] == 3
    assert after["performance"]["avg_latency_ms"] > 0
    # Of three requests the 95th percentile is the slowest, never below the mean.
    assert after["performance"]["p95_latency_ms"] >= after["performance"]["avg_latency_ms"]
    assert after["performance"]["avg_throughput_tok_s"] > 0
    assert after["capabilities"] == ["reasoning", "planning", "code_review", "explanation"]
    assert "/chat/completions" in after["endpoints"]
    assert after["backend"]["kind"] == "embedded"


@ON_THE_MODULES_LOOP
async def test_health_names_backend_and_model(shared_llm: AsyncTestClient[Any]) -> None:
    body = (await shared_llm.get("/health")).json()

    assert body["status"] == "healthy"
    assert body["details"]["backend"] == "embedded"
    assert body["details"]["model"] == "smollm2-135m-instruct"
    assert body["details"]["model_loaded"] is True


@ON_THE_MODULES_LOOP
async def test_health_documents_the_503_it_answers_when_unhealthy(
    shared_llm: AsyncTestClient[Any],
) -> None:
    document = (await shared_llm.get("/schema/openapi.json")).json()

    responses = document["paths"]["/health"]["get"]["responses"]

    assert set(responses) == {"200", "503"}
    assert responses["503"]["content"] == responses["200"]["content"]


COMPLETION_TOKENS = {"kind": "completion", "model": "llama31_8b"}
ANSWERED_CHATS = {"endpoint": "chat_completions", "model": "llama31_8b", "status": "ok"}


@ON_THE_MODULES_LOOP
async def test_metrics_count_tokens_per_model(shared_llm: AsyncTestClient[Any]) -> None:
    """On the module's service: what one answer adds to the counters, whatever came before."""
    before = (await shared_llm.get("/metrics")).text
    answer = (await shared_llm.post("/chat/completions", json=CHAT)).json()
    after = (await shared_llm.get("/metrics")).text

    completion = answer["usage"]["completion_tokens"]
    tokens, requests = "pas_llm_tokens_total", "pas_llm_requests_total"
    added_tokens = counted(after, tokens, **COMPLETION_TOKENS) - counted(
        before, tokens, **COMPLETION_TOKENS
    )
    added_requests = counted(after, requests, **ANSWERED_CHATS) - counted(
        before, requests, **ANSWERED_CHATS
    )
    assert added_tokens == completion
    assert added_requests == 1


# The spec's unit tests (004, "Unit Tests (Per Service)"), with the module-level app.


@pytest.fixture
def spec_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("LLAMA31_8B_REGISTER", "false")
    monkeypatch.setenv("PAS_ENV_FILE", "")
    module = importlib.import_module("services.llm.llama31_8b_service")
    return importlib.reload(module)


@pytest.fixture
def client(spec_module: ModuleType) -> Iterator[TestClient[Any]]:
    with TestClient(spec_module.app) as test_client:
        yield test_client


def test_health(client: TestClient[Any]) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "healthy"
    assert data["port"] == 8050


def test_chat_completions(client: TestClient[Any]) -> None:
    request = {
        "model": "llama3.1:8b",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "stream": False,
    }
    response = client.post("/chat/completions", json=request)
    assert response.status_code == 200
    data = response.json()
    assert "choices" in data
    assert len(data["choices"]) > 0
