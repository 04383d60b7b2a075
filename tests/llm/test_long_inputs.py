"""A question longer than the model's context is a 400 that says so, never a server error.

The TLC classifier runs as a real uvicorn process on the real embedded model with a 256-token
context (as in the schema fuzzing). Its prompt is the few-shot examples and the label list
plus the query (and the context documents), so a query of a few hundred tokens no longer fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.llm.conftest import TLC_APP
from tests.support.processes import ServiceProcess, free_port

CONTEXT = 256
LONG = "0" * 4000


@pytest.fixture(scope="module")
def tlc_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("tlc-long") / "tlc.log"
    environment = {"TLC_REGISTER": "false", "TLC_CONTEXT_LENGTH": str(CONTEXT)}
    process = ServiceProcess(TLC_APP, free_port(), environment, log).start()
    yield process.url
    process.stop()


async def _post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        return await http.post(path, json=body)


def _refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail: str = response.json()["detail"]
    assert f"context of {CONTEXT} tokens" in detail
    return detail


@pytest.mark.parametrize("path", ["/classify_domain", "/extract_tmd"])
async def test_a_query_longer_than_the_context_is_a_400_naming_it(tlc_url: str, path: str) -> None:
    detail = _refusal(await _post(tlc_url, path, {"query": LONG}))

    assert detail.endswith("shorten the query")


async def test_context_docs_that_overflow_the_context_are_named(tlc_url: str) -> None:
    body = {"query": "What is diabetes?", "context_docs": ["Glucose and insulin. " * 200]}

    detail = _refusal(await _post(tlc_url, "/extract_tmd", body))

    assert "context_docs" in detail


async def test_the_classifier_still_answers_after_a_refusal(tlc_url: str) -> None:
    await _post(tlc_url, "/classify_domain", {"query": LONG, "top_k": 3})

    response = await _post(tlc_url, "/classify_domain", {"query": "What is diabetes?", "top_k": 3})

    assert response.status_code == 200, response.text
    assert response.json()["primary_domain"] == "MEDICINE"
