"""A run's LLM calls count toward its workflow: the PAS LLM service it calls (the real embedded
model) publishes usage events on a real broker that carry the run's workflow and run ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.usage import HEADER_WORKFLOW_ID, HEADER_WORKFLOW_RUN_ID
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
