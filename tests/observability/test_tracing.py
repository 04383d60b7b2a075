"""One trace across the router and an LLM service on the embedded model, received by a real
OTLP/HTTP endpoint in another process; and no export at all when tracing is not configured."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.common.kafka.topics import ensure_topics
from tests.langgraph_runner.conftest import RUNNER_APP, Topics, as_message, collect, trigger
from tests.langgraph_runner.test_workflows import DOCUMENT
from tests.provider_router.conftest import ask, one_provider
from tests.support.otlp_receiver import OTLPReceiver, Span
from tests.support.processes import REPO_ROOT, ServiceProcess, free_port

LLM_APP = "services.llm.llama31_8b_service:app"
ROUTER_APP = "services.provider_router.provider_router:app"


@pytest.fixture
def workflow_topics(kafka_bootstrap: str) -> Topics:
    run = uuid.uuid4().hex[:8]
    names = Topics(events=f"wf-events-{run}", results=f"wf-results-{run}", dlq=f"wf-dlq-{run}")
    asyncio.run(ensure_topics(kafka_bootstrap, {names.events: 1, names.results: 1, names.dlq: 1}))
    return names


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(tmp_path / "otlp.log") as running:
        yield running


def start_pair(tmp_path: Path, tracing: dict[str, str]) -> tuple[ServiceProcess, ServiceProcess]:
    """An LLM service on the embedded model and a router whose one provider it is."""
    llm_port = free_port()
    llm = ServiceProcess(
        LLM_APP,
        llm_port,
        {
            "LLAMA31_8B_PORT": str(llm_port),
            "LLAMA31_8B_REGISTER": "false",
            "LLAMA31_8B_CONTEXT_LENGTH": "1024",
            **tracing,
        },
        tmp_path / "llm.log",
    ).start(ready_timeout_s=60)
    router = ServiceProcess(
        ROUTER_APP,
        free_port(),
        {
            "ROUTER_USE_REGISTRY": "false",
            "ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
            "ROUTER_PROVIDERS_FILE": one_provider(tmp_path, llm.url, "smol", "summarize"),
            **tracing,
        },
        tmp_path / "router.log",
    ).start()
    return llm, router


def tracing_env(receiver: OTLPReceiver) -> dict[str, str]:
    # A short batch delay: the spans arrive while the test waits, not five seconds later.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}


def one(spans: list[Span], **match: Any) -> Span:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} spans match {match}: {[s['name'] for s in spans]}"
    return found[0]


def test_a_routed_call_is_one_trace_with_genai_token_counts(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    llm, router = start_pair(tmp_path, tracing_env(receiver))
    try:
        answer = httpx.post(f"{router.url}/v1/chat/completions", json=ask("summarize"), timeout=120)
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]

        def complete(spans: list[Span]) -> bool:
            services = {(s["service"], s["kind"]) for s in spans if s["attributes"]}
            return {("llama31_8b", "INTERNAL"), ("provider_router", "CLIENT")} <= services

        receiver.wait_for(complete, "the router's and the LLM service's spans")
    finally:
        router.stop()
        llm.stop()
    spans = receiver.spans()

    server = one(spans, kind="SERVER", name="POST /v1/chat/completions", parent_span_id="")
    trace = [s for s in spans if s["trace_id"] == server["trace_id"]]
    ids = {s["span_id"] for s in trace}
    orphans = [s["name"] for s in trace if s["parent_span_id"] and s["parent_span_id"] not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
    assert len({s["service"] for s in trace}) == 2

    routed = one(trace, scope="pas.genai", kind="CLIENT")
    assert routed["service"] == server["service"]
    assert routed["name"] == "chat smol"
    attributes = routed["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "smol"
    assert attributes["gen_ai.request.model"] == "smol"
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    total = usage["prompt_tokens"] + usage["completion_tokens"]
    assert attributes["pas.cost_usd"] == pytest.approx(total / 1000)

    # The LLM service's server span continues the router's outbound HTTP call...
    outbound = one(trace, service=server["service"], kind="CLIENT", scope=_AIOHTTP_SCOPE)
    assert outbound["parent_span_id"] == routed["span_id"]
    llm_server = one(trace, kind="SERVER", parent_span_id=outbound["span_id"])
    # ... and its model call, under it, counts the same tokens.
    generated = one(trace, scope="pas.genai", kind="INTERNAL")
    assert generated["service"] == llm_server["service"]
    assert generated["attributes"]["gen_ai.provider.name"] == "embedded"
    assert generated["attributes"]["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert generated["attributes"]["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert _ancestors(generated, trace) >= {llm_server["span_id"], server["span_id"]}

    # The router's access log line names the trace and the server span beside the request id.
    lines = [json.loads(line) for line in router.logs().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request" and "trace_id" in line]
    assert access, "no access log line with a trace id"
    assert access[0]["trace_id"] == server["trace_id"]
    assert access[0]["span_id"] == server["span_id"]
    assert access[0]["request_id"]


# The router calls its upstreams with aiohttp.
_AIOHTTP_SCOPE = "opentelemetry.instrumentation.aiohttp_client"


def _ancestors(span: Span, trace: list[Span]) -> set[str]:
    by_id = {s["span_id"]: s for s in trace}
    found: set[str] = set()
    parent = span["parent_span_id"]
    while parent:
        found.add(parent)
        parent = by_id[parent]["parent_span_id"]
    return found


def test_without_an_exporter_nothing_is_sent(receiver: OTLPReceiver, tmp_path: Path) -> None:
    # The receiver is up, but no variable points at it: tracing stays off.
    llm, router = start_pair(tmp_path, {})
    try:
        answer = httpx.post(f"{router.url}/v1/chat/completions", json=ask("summarize"), timeout=120)
        assert answer.status_code == 200, answer.text
    finally:
        # Stopped: with tracing on, the shutdown hook would have flushed every span by now.
        router.stop()
        llm.stop()

    assert receiver.spans() == []
    assert "tracing on" not in router.logs()


def test_a_kafka_triggered_workflow_is_one_trace_from_producer_to_model(
    receiver: OTLPReceiver, tmp_path: Path, kafka_bootstrap: str, workflow_topics: Topics
) -> None:
    topics = workflow_topics
    tracing = tracing_env(receiver)
    llm, router = start_pair(tmp_path, tracing)
    runner = ServiceProcess(
        RUNNER_APP,
        free_port(),
        {
            "RUNNER_CHECKPOINT_PATH": str(tmp_path / "checkpoints.db"),
            "RUNNER_STORE_PATH": str(tmp_path / "runs.db"),
            "RUNNER_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "RUNNER_LLM_API": "openai",
            "RUNNER_LLM_URL": f"{router.url}/v1",
            "RUNNER_LLM_CAPABILITY": "summarize",
            **topics.env(),
            **tracing,
        },
        tmp_path / "runner.log",
    )
    try:
        runner.start(ready_timeout_s=60)
        event = trigger("document_analysis", DOCUMENT)
        key, value = as_message(event)
        produced = subprocess.run(
            [
                *(sys.executable, "-m", "tests.support.traced_producer"),
                *(kafka_bootstrap, topics.events, key.decode()),
            ],
            input=value,
            capture_output=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PAS_ENV_FILE": "", **tracing},
            timeout=120,
            check=True,
        )
        trace_id = produced.stdout.decode().split()[-1]
        asyncio.run(collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1))

        def whole(spans: list[Span]) -> bool:
            services = {s["service"] for s in spans if s["trace_id"] == trace_id}
            generated = [
                s for s in spans if s["scope"] == "pas.genai" and s["trace_id"] == trace_id
            ]
            return {
                "dag_task",
                "langgraph_runner",
                "provider_router",
                "llama31_8b",
            } <= services and (len(generated) >= 3)  # the runner's, the router's, the model's

        spans = receiver.wait_for(whole, "the workflow's trace from producer to model", 60)
    finally:
        runner.stop()
        router.stop()
        llm.stop()

    trace = [s for s in spans if s["trace_id"] == trace_id]
    ids = {s["span_id"] for s in trace}
    orphans = [s["name"] for s in trace if s["parent_span_id"] and s["parent_span_id"] not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
    root = one(trace, parent_span_id="")
    assert root["service"] == "dag_task"
    producer = one(trace, kind="PRODUCER", name=f"send {topics.events}")
    assert producer["attributes"]["messaging.system"] == "kafka"
    assert producer["attributes"]["messaging.destination.name"] == topics.events
    # The bridge's consume span continues the producer's, and the run is its child.
    consume = one(trace, kind="CONSUMER", name=f"process {topics.events}")
    assert consume["service"] == "langgraph_runner"
    assert consume["parent_span_id"] == producer["span_id"]
    assert consume["attributes"]["messaging.destination.name"] == topics.events
    run = one(trace, name="workflow document_analysis")
    assert run["parent_span_id"] == consume["span_id"]
    nodes = [s for s in trace if s["scope"] == "pas.langgraph"]
    # The analysis is asked for once more when its first answer was not grounded in the text.
    analyses = [s for s in nodes if s["name"] == "node analyse"]
    expected_nodes = ["node analyse", "node structure"] * len(analyses)
    assert sorted(s["name"] for s in nodes) == sorted(expected_nodes)
    by_id = {s["span_id"]: s["name"] for s in trace}
    assert {by_id[s["parent_span_id"]] for s in nodes} == {run["name"]}
    # Each model call of the runner: a GenAI span in its node, whose HTTP request carries its
    # traceparent, so the router's server span (and its own GenAI span) continue it.
    for analyse in analyses:
        asked = one(trace, scope="pas.genai", kind="CLIENT", parent_span_id=analyse["span_id"])
        assert asked["service"] == "langgraph_runner"
        assert asked["attributes"]["gen_ai.operation.name"] == "chat"
        outbound = one(trace, kind="CLIENT", scope=_AIOHTTP_SCOPE, parent_span_id=asked["span_id"])
        router_server = one(trace, kind="SERVER", parent_span_id=outbound["span_id"])
        assert router_server["service"] == "provider_router"
        routed, generated = (
            one(
                [s for s in trace if asked["span_id"] in _ancestors(s, trace)],
                scope="pas.genai",
                kind=kind,
            )
            for kind in ("CLIENT", "INTERNAL")
        )
        assert routed["service"] == "provider_router"
        assert routed["span_id"] in _ancestors(generated, trace)
        for key_name in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
            assert (
                generated["attributes"][key_name]
                == routed["attributes"][key_name]
                == asked["attributes"][key_name]
                > 0
            )
