"""A run's LLM calls count toward its workflow: the PAS LLM service it calls (the real embedded
model) publishes usage events on a real broker that carry the run's workflow and run ids; and
the run counts what its calls cost, the tokens a prompt cache gave and took at their own
prices."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from libs.common.clients.openai_client import OpenAIClient
from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.usage import HEADER_WORKFLOW_ID, HEADER_WORKFLOW_RUN_ID
from services.langgraph_runner.llm import LLMPrices, RunUsageCallback
from services.langgraph_runner.openai_chat import OpenAICompatibleChat
from services.langgraph_runner.settings import ModelPrice
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.processes import ServiceProcess, free_port
from tests.support.usage_topic import usage_events


async def test_llm_calls_of_a_run_carry_its_workflow_and_run_ids(
    make_runner: Callable[..., Any], kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"usage-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    llm = ServiceProcess(
        "services.llm.llama31_8b_service:app",
        free_port(),
        {
            "LLAMA31_8B_REGISTER": "false",
            "LLAMA31_8B_CONTEXT_LENGTH": "2048",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "LLAMA31_8B_USAGE_TOPIC": topic,
        },
        tmp_path / "llm.log",
    ).start()
    try:
        runner = await make_runner(llm_url=llm.url)
        response = await runner.post(
            "/workflows/document_analysis/runs?wait=true",
            json={
                "input": {
                    "title": "Rates desk note",
                    "content": "The central bank held rates at 5.25%; bond yields fell 10 bp.",
                }
            },
        )
        run = response.json()
        events = await usage_events(kafka_bootstrap, topic)
    finally:
        llm.stop()

    assert run["status"] == "success", run
    assert events, "the LLM service published no usage event"
    assert {(e.workflow_id, e.run_id) for e in events} == {("document_analysis", run["run_id"])}
    assert all(e.status == "ok" and e.completion_tokens > 0 for e in events)


async def test_calls_through_the_openai_compatible_api_carry_the_run_s_ids(
    make_runner: Callable[..., Any], tmp_path: Path
) -> None:
    """The provider router's path (the shared OpenAI client): each call names its run in the
    headers the LLM service (or the router) attributes usage by."""
    responder = OpenAIResponder()
    with serve_asgi(responder) as url:
        runner = await make_runner(llm_api="openai", llm_url=f"{url}/v1")
        response = await runner.post(
            "/workflows/probe/runs?wait=true",
            json={"input": {"log": str(tmp_path / "probe.log"), "ask": "Rates and bonds?"}},
        )

    run = response.json()
    assert run["status"] == "success", run
    assert [
        (sent[HEADER_WORKFLOW_ID.lower()], sent[HEADER_WORKFLOW_RUN_ID.lower()])
        for sent in responder.headers
    ] == [("probe", run["run_id"])]


async def test_a_runs_cost_prices_what_a_prompt_cache_gave_and_took_at_their_own_prices() -> None:
    """An OpenAI-compatible endpoint played by a fake speaking OpenAI's chat-completions wire
    format, whose usage says 8 of the 11 prompt tokens came from its prompt cache and 2 were
    written to it (Anthropic's ``cache_creation_input_tokens``, as the provider router passes it
    on): LangChain's usage says so too, and a run's cost prices them at RUNNER_LLM_PRICES'
    cached_input_per_1k and cache_write_per_1k."""
    price = ModelPrice(
        model="priced",
        input_per_1k=1.0,
        cached_input_per_1k=0.1,
        cache_write_per_1k=1.25,
        output_per_1k=2.0,
    )
    usage = RunUsageCallback(prices=LLMPrices([price]))
    with serve_asgi(OpenAIResponder("priced", cached_tokens=8, written_tokens=2)) as url:
        client = OpenAIClient(f"{url}/v1")
        try:
            chat = OpenAICompatibleChat(model="priced", client=client)
            message = await chat.ainvoke("Is a bond a loan?", config={"callbacks": [usage]})
        finally:
            await client.aclose()

    assert isinstance(message, AIMessage)
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_token_details"] == {"cache_read": 8, "cache_creation": 2}
    assert usage.prompt_tokens == 11
    # 1 prompt token read, 8 from the cache, 2 written to it; 5 answered.
    assert usage.cost_usd == pytest.approx((1 * 1.0 + 8 * 0.1 + 2 * 1.25 + 5 * 2.0) / 1000)
