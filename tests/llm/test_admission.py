"""A service takes its slots' answers and ``max_waiting`` more; one more is refused at once
with 429 and ``Retry-After``, not left to wait until it times out. Against the real embedded
model, one slot and one request allowed to wait."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.llm.backends.base import Generation, Turn
from services.llm.llama31_8b_service import Llama31Settings
from services.llm.profiles import LLAMA31_8B
from services.llm.service import build_runtime
from tests.support.llm_service import start_llm_service
from tests.support.metrics_text import sample_value
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
def busy_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = Path(tmp_path_factory.mktemp("admission")) / "llm.log"
    service = start_llm_service(log, {"LLAMA31_8B_PARALLEL": "1", "LLAMA31_8B_MAX_WAITING": "1"})
    yield service
    service.stop()


def chat(words: str, **extra: object) -> dict[str, object]:
    return {
        "messages": [{"role": "user", "content": f"Explain {words} in detail."}],
        "max_tokens": 48,
        "temperature": 0,
        **extra,
    }


async def test_past_its_slots_and_waiting_room_a_request_is_refused_with_a_wait(
    busy_service: ServiceProcess,
) -> None:
    topics = ["bonds", "equities", "futures", "options"]
    async with httpx.AsyncClient(base_url=busy_service.url, timeout=120) as llm:
        answers = await asyncio.gather(
            *(llm.post("/v1/chat/completions", json=chat(t)) for t in topics)
        )
        # Its places given back: a stream is taken again, and nothing is left under way.
        async with llm.stream(
            "POST", "/v1/chat/completions", json=chat("swaps", stream=True)
        ) as streamed:
            lines = [line async for line in streamed.aiter_lines() if line.startswith("data: ")]
        metrics = (await llm.get("/metrics")).text

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 429, 429]
    for refused in (a for a in answers if a.status_code == 429):
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert (
            "the model is busy: every slot (1) answering and 1 waiting" in refused.json()["detail"]
        )
    assert streamed.status_code == 200
    assert lines[-1] == "data: [DONE]"
    assert sample_value(metrics, "pas_llm_requests_under_way") == 0
    assert sample_value(metrics, "pas_llm_requests_total", status="429") == 2


async def test_a_stream_dropped_before_it_is_read_gives_its_place_back(
    llm_settings: Llama31Settings,
) -> None:
    """The runtime the service answers with, on the real model: a stream opened (its first
    event read) and dropped unread, as when another choice of the same request fails to open,
    runs no ``finally``; its place at the gate comes back when it is collected."""
    runtime = build_runtime(llm_settings, LLAMA31_8B)
    await runtime.backend.start()
    try:
        ask = Generation(messages=[Turn(role="user", content="Hi")], max_tokens=4, temperature=0)
        stream = await runtime.open_stream("chat", ask)
        assert runtime.gate.under_way == 1
        del stream
        gc.collect()
        assert runtime.gate.under_way == 0
        # The one place is free again: a whole answer goes through.
        completion = await runtime.answer("chat", ask)
        assert completion.completion_tokens > 0
        assert runtime.gate.under_way == 0
    finally:
        await runtime.backend.close()
