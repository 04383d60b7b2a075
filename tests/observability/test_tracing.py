"""One trace across the router and an LLM service on the embedded model, received by a real
OTLP/HTTP endpoint in another process; and no export at all when tracing is not configured."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from libs.common.kafka.topics import ensure_topics
from tests.langgraph_runner.conftest import RUNNER_APP, Topics, as_message, collect, send, trigger
from tests.langgraph_runner.test_workflows import DOCUMENT
from tests.provider_router.conftest import ask, one_provider, providers_file
from tests.support.llm_service import start_llm_service
from tests.support.otlp_receiver import OTLPReceiver, Span, ancestors, one
from tests.support.processes import REPO_ROOT, ServiceProcess, free_port

ROUTER_APP = "services.provider_router.provider_router:app"


@pytest.fixture
def workflow_topics(kafka_bootstrap: str) -> Topics:
    run = uuid.uuid4().hex[:8]
    names = Topics(events=f"wf-events-{run}", results=f"wf-results-{run}", dlq=f"wf-dlq-{run}")
    asyncio.run(ensure_topics(kafka_bootstrap, {names.events: 1, names.results: 1, names.dlq: 1}))
    return names


def start_llm(tmp_path: Path, tracing: dict[str, str], **env: str) -> ServiceProcess:
    """The Llama 3.1 8B wrapper on the embedded model, tracing as ``tracing`` says."""
    return start_llm_service(tmp_path / "llm.log", {**tracing, **env})


def start_pair(tmp_path: Path, tracing: dict[str, str]) -> tuple[ServiceProcess, ServiceProcess]:
    """An LLM service on the embedded model and a router whose one provider it is."""
    llm = start_llm(tmp_path, tracing)
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
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == cached
    total = usage["prompt_tokens"] + usage["completion_tokens"]
    assert attributes["pas.cost_usd"] == pytest.approx(total / 1000)

    # The GenAI span is the client span of the router's request: it names the server it
    # called, and the LLM service's server span continues it...
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == llm.port
    assert not [s for s in trace if s["kind"] == "CLIENT" and s["scope"] != "pas.genai"]
    llm_server = one(trace, kind="SERVER", parent_span_id=routed["span_id"])
    assert llm_server["attributes"]["http.response.status_code"] == 200
    # ... and its model call, under it, counts the same tokens.
    generated = one(trace, scope="pas.genai", kind="INTERNAL")
    assert generated["service"] == llm_server["service"]
    assert generated["attributes"]["gen_ai.provider.name"] == "embedded"
    assert generated["attributes"]["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert generated["attributes"]["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert generated["attributes"]["gen_ai.usage.cache_read.input_tokens"] == cached
    assert ancestors(generated, trace) >= {llm_server["span_id"], server["span_id"]}

    # The router's access log line names the trace and the server span beside the request id.
    lines = [json.loads(line) for line in router.logs().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request" and "trace_id" in line]
    assert access, "no access log line with a trace id"
    assert access[0]["trace_id"] == server["trace_id"]
    assert access[0]["span_id"] == server["span_id"]
    assert access[0]["request_id"]


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


def runner_process(
    tmp_path: Path, kafka_bootstrap: str, topics: Topics, tracing: dict[str, str], **llm: str
) -> ServiceProcess:
    """A runner on ``topics``, tracing as ``tracing`` says, its model as ``llm`` names it (not
    started yet)."""
    return ServiceProcess(
        RUNNER_APP,
        free_port(),
        {
            "RUNNER_CHECKPOINT_PATH": str(tmp_path / "checkpoints.db"),
            "RUNNER_STORE_PATH": str(tmp_path / "runs.db"),
            "RUNNER_BOOTSTRAP_SERVERS": kafka_bootstrap,
            **llm,
            **topics.env(),
            **tracing,
        },
        tmp_path / "runner.log",
    )


def test_a_kafka_triggered_workflow_is_one_trace_from_producer_to_model(
    receiver: OTLPReceiver, tmp_path: Path, kafka_bootstrap: str, workflow_topics: Topics
) -> None:
    topics = workflow_topics
    tracing = tracing_env(receiver)
    llm, router = start_pair(tmp_path, tracing)
    runner = runner_process(
        tmp_path,
        kafka_bootstrap,
        topics,
        tracing,
        RUNNER_LLM_API="openai",
        RUNNER_LLM_URL=f"{router.url}/v1",
        RUNNER_LLM_CAPABILITY="summarize",
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

        receiver.wait_for(whole, "the workflow's trace from producer to model", 60)
    finally:
        runner.stop()
        router.stop()
        llm.stop()
    # Read again once the services have stopped, which flushes every span they ended: a span's
    # parent can go out in a later export batch than the span itself.
    spans = receiver.spans()

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
        router_server = one(trace, kind="SERVER", parent_span_id=asked["span_id"])
        assert router_server["service"] == "provider_router"
        routed, generated = (
            one(
                [s for s in trace if asked["span_id"] in ancestors(s, trace)],
                scope="pas.genai",
                kind=kind,
            )
            for kind in ("CLIENT", "INTERNAL")
        )
        assert routed["service"] == "provider_router"
        assert routed["span_id"] in ancestors(generated, trace)
        for key_name in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
            assert (
                generated["attributes"][key_name]
                == routed["attributes"][key_name]
                == asked["attributes"][key_name]
                > 0
            )


_STATUS_ERROR = 2  # STATUS_CODE_ERROR in OTLP


def test_a_router_stream_its_client_leaves_still_ends_its_spans(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    # A backend that streams one chunk a second; the client leaves after the first.
    backend = ServiceProcess(
        "tests.support.openai_responder:slow_stream_app", free_port(), {}, tmp_path / "b.log"
    ).start(ready_path="/v1/models")
    router = ServiceProcess(
        ROUTER_APP,
        free_port(),
        {
            "ROUTER_USE_REGISTRY": "false",
            "ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
            "ROUTER_PROVIDERS_FILE": one_provider(tmp_path, backend.url, "slow", "summarize"),
            **tracing_env(receiver),
        },
        tmp_path / "router.log",
    ).start()
    try:
        body = ask("summarize", stream=True)
        with httpx.stream("POST", f"{router.url}/v1/chat/completions", json=body) as answer:
            assert answer.status_code == 200
            assert next(answer.iter_raw()).startswith(b"data: ")
        # Received while the router still runs: ended when the client left, not at shutdown.
        receiver.wait_for(
            lambda spans: any(s["scope"] == "pas.genai" for s in spans), "the stream's span"
        )
    finally:
        router.stop()
        backend.stop()
    # Read again once the router stopped: its server span can go out in a later export batch
    # than the model call's (it failed CI once so).
    spans = receiver.spans()

    routed = one(spans, scope="pas.genai", kind="CLIENT")
    assert routed["name"] == "chat slow"
    assert routed["status"]["code"] == _STATUS_ERROR
    assert routed["attributes"]["error.type"] == "cancelled"
    assert "gen_ai.usage.output_tokens" not in routed["attributes"]
    server = one(spans, kind="SERVER", name="POST /v1/chat/completions")
    assert routed["parent_span_id"] == server["span_id"]


def test_a_fallback_and_a_refusal_are_on_the_router_spans(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    """Attributes noted during a call (its server, its usage, how it failed) and the response
    status are set on the spans when they end: the spans still carry them, and each model
    call's span lies within its request's."""
    backend = ServiceProcess(
        "tests.support.openai_responder:app", free_port(), {}, tmp_path / "b.log"
    ).start(ready_path="/v1/models")
    dead_port = free_port()  # nothing listens there
    providers = providers_file(
        tmp_path,
        f'[[providers]]\nname = "dead"\nbase_url = "http://127.0.0.1:{dead_port}/v1"\n'
        '[[providers.models]]\nname = "cheap"\ncapabilities = ["summarize", "classify"]\n'
        "input_per_1k = 0.1\noutput_per_1k = 0.1\n"
        f'[[providers]]\nname = "live"\nbase_url = "{backend.url}/v1"\n'
        '[[providers.models]]\nname = "dear"\ncapabilities = ["summarize"]\n'
        "input_per_1k = 1.0\noutput_per_1k = 1.0\n",
    )
    router = ServiceProcess(
        ROUTER_APP,
        free_port(),
        {
            "ROUTER_USE_REGISTRY": "false",
            "ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
            "ROUTER_PROVIDERS_FILE": providers,
            "ROUTER_RETRIES": "0",
            **tracing_env(receiver),
        },
        tmp_path / "router.log",
    ).start()
    try:
        served = httpx.post(f"{router.url}/v1/chat/completions", json=ask("summarize"))
        assert served.status_code == 200, served.text
        refused = httpx.post(f"{router.url}/v1/chat/completions", json=ask("classify"))
        assert refused.status_code == 503, refused.text
        spans = receiver.wait_for(
            lambda spans: (
                len([s for s in spans if s["kind"] == "SERVER"]) == 2
                and len([s for s in spans if s["scope"] == "pas.genai"]) == 3
            ),
            "two requests' spans",
        )
    finally:
        router.stop()
        backend.stop()

    first, second = sorted(
        (s for s in spans if s["kind"] == "SERVER"), key=lambda span: span["start_ns"]
    )
    assert first["attributes"]["http.request.method"] == "POST"
    assert first["attributes"]["url.path"] == "/v1/chat/completions"
    assert first["attributes"]["http.response.status_code"] == 200
    assert "error.type" not in first["attributes"]
    assert first["status"]["code"] != _STATUS_ERROR
    assert second["attributes"]["http.response.status_code"] == 503
    assert second["attributes"]["error.type"] == "503"
    assert second["status"]["code"] == _STATUS_ERROR

    failed = one(spans, name="chat cheap", parent_span_id=first["span_id"])
    answered = one(spans, name="chat dear", parent_span_id=first["span_id"])
    assert failed["status"]["code"] == _STATUS_ERROR
    assert failed["attributes"]["error.type"] == "UpstreamFailed"
    assert failed["attributes"]["server.port"] == dead_port
    assert failed["attributes"]["pas.fallback_index"] == 0
    assert "gen_ai.usage.input_tokens" not in failed["attributes"]
    assert answered["status"]["code"] != _STATUS_ERROR
    assert "error.type" not in answered["attributes"]
    assert answered["attributes"]["server.port"] == backend.port
    assert answered["attributes"]["pas.fallback_index"] == 1
    usage = served.json()["usage"]
    assert answered["attributes"]["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert answered["attributes"]["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert failed["end_ns"] <= answered["start_ns"]
    for call in (failed, answered):
        assert first["start_ns"] <= call["start_ns"] <= call["end_ns"] <= first["end_ns"]
    alone = one(spans, name="chat cheap", parent_span_id=second["span_id"])
    assert alone["attributes"]["error.type"] == "UpstreamFailed"


def test_the_runners_ollama_calls_have_genai_spans_with_ollamas_token_counts(
    receiver: OTLPReceiver, tmp_path: Path, kafka_bootstrap: str, workflow_topics: Topics
) -> None:
    # The LLM service on the embedded model serves Ollama's /api/chat (prompt_eval_count and
    # eval_count included), which ChatOllama calls as it would call Ollama.
    topics = workflow_topics
    tracing = tracing_env(receiver)
    llm = start_llm(tmp_path, tracing)
    runner = runner_process(
        tmp_path, kafka_bootstrap, topics, tracing, RUNNER_LLM_API="ollama", RUNNER_LLM_URL=llm.url
    )
    try:
        runner.start(ready_timeout_s=60)
        key, value = as_message(trigger("document_analysis", DOCUMENT))
        asyncio.run(send(kafka_bootstrap, topics.events, [(key, value)]))
        asyncio.run(collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1))

        def asked_and_answered(spans: list[Span]) -> bool:
            asked = [s for s in spans if s["scope"] == "pas.genai" and s["kind"] == "CLIENT"]
            return bool(asked) and len(asked) <= len(
                [s for s in spans if s["scope"] == "pas.genai" and s["kind"] == "INTERNAL"]
            )

        receiver.wait_for(asked_and_answered, "the runner's and the model's spans", 60)
    finally:
        runner.stop()
        llm.stop()
    spans = receiver.spans()  # flushed at shutdown: every parent is in (see above)

    for asked in [s for s in spans if s["scope"] == "pas.genai" and s["kind"] == "CLIENT"]:
        assert asked["service"] == "langgraph_runner"
        assert asked["name"] == "chat llama3.1:8b"
        attributes = asked["attributes"]
        assert attributes["gen_ai.provider.name"] == "ollama"
        assert attributes["gen_ai.request.model"] == "llama3.1:8b"
        # What the call asked with: the runner's defaults (no version sets them here).
        assert attributes["gen_ai.request.temperature"] == 0.0
        assert attributes["gen_ai.request.seed"] == 0
        assert "gen_ai.request.top_p" not in attributes
        # The request went out inside the span (httpx's client span is its child) and the
        # LLM service continued it; its model call counts the tokens Ollama's answer reported.
        # (The run is one trace: both calls are in it.)
        trace = [s for s in spans if s["trace_id"] == asked["trace_id"]]
        outbound = one(trace, kind="CLIENT", parent_span_id=asked["span_id"])
        server = one(trace, kind="SERVER", parent_span_id=outbound["span_id"])
        assert server["service"] == "llama31_8b"
        below = [s for s in trace if server["span_id"] in ancestors(s, trace)]
        generated = one(below, scope="pas.genai", kind="INTERNAL")
        for key_name in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
            assert attributes[key_name] == generated["attributes"][key_name] > 0
