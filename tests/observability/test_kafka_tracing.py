"""Traces across the broker: a document through the Kafka LLM processor to the embedded model
and back onto the results topic is one trace; analytics' batch span links to the usage event
it stored; and with tracing off the processor adds no trace header anywhere. Spans are received
by a real OTLP/HTTP endpoint in another process; the broker and the model are the real ones."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.documents import DocumentResult
from services.kafka_llm_processor.send_samples import documents
from tests.analytics.conftest import Topics as AnalyticsTopics
from tests.analytics.conftest import collector_environment, totals, usage_event, utc_now
from tests.observability.test_tracing import start_llm, tracing_env
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.otlp_receiver import OTLPReceiver, Span, ancestors, one
from tests.support.processes import REPO_ROOT, ServiceProcess, free_port
from tests.support.topic_reader import read_from_start

PROCESSOR_APP = "services.kafka_llm_processor.app:app"
COLLECTOR_APP = "services.analytics.app:app"


class ProcessorTopics(msgspec.Struct, frozen=True):
    input: str
    output: str
    dlq: str
    usage: str
    """Where the LLM service publishes its usage events."""

    def env(self) -> dict[str, str]:
        return {
            "INPUT_TOPIC": self.input,
            "OUTPUT_TOPIC": self.output,
            "DLQ_TOPIC": self.dlq,
            "PROCESSOR_GROUP_ID": f"group-{self.input}",
        }


@pytest.fixture
def processor_topics(kafka_bootstrap: str) -> ProcessorTopics:
    run = uuid.uuid4().hex[:8]
    names = ProcessorTopics(
        input=f"docs-{run}", output=f"results-{run}", dlq=f"dlq-{run}", usage=f"usage-{run}"
    )
    asyncio.run(ensure_topics(kafka_bootstrap, dict.fromkeys(msgspec.structs.astuple(names), 1)))
    return names


def start_processor(
    kafka_bootstrap: str,
    topics: ProcessorTopics,
    llm_url: str,
    tmp_path: Path,
    env: dict[str, str],
) -> ServiceProcess:
    return ServiceProcess(
        PROCESSOR_APP,
        free_port(),
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "LLM_URL": llm_url,
            "PROCESSOR_COMMIT_INTERVAL_S": "0.2",
            # One request at a time on the embedded model: never a retry for a slow answer.
            "PROCESSOR_LLM_TIMEOUT_S": "600",
            "PROCESSOR_SPILL_DIR": str(tmp_path / "spill"),
            **topics.env(),
            **env,
        },
        tmp_path / "processor.log",
    ).start(ready_timeout_s=60)


def produce_traced(
    bootstrap: str, topic: str, key: bytes, value: bytes, env: dict[str, str]
) -> str:
    """Publish one record from a traced process of its own (a DAG task's span, then the
    PRODUCER span whose context the record's headers carry); the trace id (hex)."""
    produced = subprocess.run(
        [sys.executable, "-m", "tests.support.traced_producer", bootstrap, topic, key.decode()],
        input=value,
        capture_output=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PAS_ENV_FILE": "", **env},
        timeout=120,
        check=True,
    )
    return produced.stdout.decode().split()[-1]


async def records_of(
    bootstrap: str, topic: str, want: int, timeout_s: float = 300
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records on ``topic`` from the start (headers and all), until ``want`` came."""
    return await read_from_start(
        bootstrap, topic, lambda record: record, want=want, timeout_s=timeout_s
    )


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name.lower(): value.decode() for name, value in record.headers}


def in_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s["trace_id"] == trace_id]


def assert_whole(trace: list[Span]) -> None:
    ids = {s["span_id"] for s in trace}
    orphans = [s["name"] for s in trace if s["parent_span_id"] and s["parent_span_id"] not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"


# The embedded model answers in seconds (about 16 s for the whole test on two cores): not
# slow by the project's marker; the timeout leaves room for busy cores, as the processor's own.
@pytest.mark.timeout(420)
def test_a_document_through_the_processor_is_one_trace_onto_the_results_topic(
    receiver: OTLPReceiver, tmp_path: Path, kafka_bootstrap: str, processor_topics: ProcessorTopics
) -> None:
    topics = processor_topics
    tracing = tracing_env(receiver)
    # Its usage events go out on the broker, from the call's trace.
    llm = start_llm(
        tmp_path,
        tracing,
        LLAMA31_8B_CONTEXT_LENGTH="2048",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        LLAMA31_8B_USAGE_TOPIC=topics.usage,
    )
    try:
        # One model call whatever the model answers: an ungrounded answer is not asked again
        # (whether the 135M model's summary holds a figure the document does not moves with
        # the CPU's arithmetic), so one usage event and one GenAI span.
        no_second_question = {**tracing, "PROCESSOR_GROUNDING_RETRY": "false"}
        processor = start_processor(
            kafka_bootstrap, topics, f"{llm.url}/v1", tmp_path, no_second_question
        )
        try:
            document = msgspec.structs.replace(documents(1)[0], task="summary")
            key = document.doc_id.encode()
            trace_id = produce_traced(
                kafka_bootstrap, topics.input, key, msgspec.json.encode(document), tracing
            )
            published = asyncio.run(records_of(kafka_bootstrap, topics.output, 1))
            assert len(published) == 1, "no result on the results topic"
            usage_records = asyncio.run(records_of(kafka_bootstrap, topics.usage, 1, 30))
            assert len(usage_records) == 1, "no usage event from the LLM service"

            def whole(spans: list[Span]) -> bool:
                found = {(s["service"], s["kind"], s["name"]) for s in in_trace(spans, trace_id)}
                return {
                    ("dag_task", "PRODUCER", f"send {topics.input}"),
                    ("kafka_llm_processor", "CONSUMER", f"process {topics.input}"),
                    ("kafka_llm_processor", "PRODUCER", f"send {topics.output}"),
                    ("llama31_8b", "SERVER", "POST /v1/chat/completions"),
                    ("llama31_8b", "PRODUCER", f"send {topics.usage}"),
                } <= found and any(
                    s["service"] == "llama31_8b" and s["scope"] == "pas.genai"
                    for s in in_trace(spans, trace_id)
                )

            receiver.wait_for(whole, "the document's trace from producer to result", 60)
        finally:
            processor.stop()
    finally:
        llm.stop()
    # Read again once the services have stopped, which flushes every span they ended: a span's
    # parent can go out in a later export batch than the span itself.
    spans = receiver.spans()

    result_record = published[0]
    result = msgspec.json.decode(result_record.value, type=DocumentResult)
    assert result.doc_id == document.doc_id
    assert result.status in ("ok", "ungrounded")  # answered: grounded or flagged as not
    trace = in_trace(spans, trace_id)
    assert_whole(trace)
    assert one(trace, parent_span_id="")["service"] == "dag_task"

    producer = one(trace, kind="PRODUCER", name=f"send {topics.input}")
    consume = one(trace, kind="CONSUMER", name=f"process {topics.input}")
    assert consume["service"] == "kafka_llm_processor"
    assert consume["parent_span_id"] == producer["span_id"]
    assert consume["attributes"]["messaging.system"] == "kafka"
    assert consume["attributes"]["messaging.destination.name"] == topics.input
    assert consume["attributes"]["messaging.consumer.group.name"] == f"group-{topics.input}"
    assert consume["attributes"]["messaging.kafka.message.key"] == document.doc_id
    assert f"{topics.input}/0/{consume['attributes']['messaging.kafka.offset']}" == (
        result.source_offset
    )

    # The processor's model call: a GenAI CLIENT span under the consume span, counting the
    # tokens the result states...
    asked = one(trace, scope="pas.genai", kind="CLIENT")
    assert asked["service"] == "kafka_llm_processor"
    assert asked["parent_span_id"] == consume["span_id"]
    assert asked["attributes"]["gen_ai.operation.name"] == "chat"
    assert asked["attributes"]["gen_ai.usage.input_tokens"] == result.prompt_tokens > 0
    assert asked["attributes"]["gen_ai.usage.output_tokens"] == result.completion_tokens > 0
    assert asked["attributes"]["gen_ai.response.model"] == result.model
    # ... whose HTTP request carried its traceparent: the LLM service's server span continues
    # it, and the model's own span there counts the same tokens.
    server = one(trace, service="llama31_8b", kind="SERVER")
    assert server["parent_span_id"] == asked["span_id"]
    generated = one(trace, service="llama31_8b", scope="pas.genai")
    assert generated["attributes"]["gen_ai.usage.input_tokens"] == result.prompt_tokens
    assert generated["attributes"]["gen_ai.usage.output_tokens"] == result.completion_tokens
    # Both say alike what the prompt cache gave (the service's usage reaches the processor).
    cached = generated["attributes"]["gen_ai.usage.cache_read.input_tokens"]
    assert asked["attributes"]["gen_ai.usage.cache_read.input_tokens"] == cached

    # The result's publication: a PRODUCER span under the consume span, and the result record
    # carries its context.
    sent = one(trace, kind="PRODUCER", name=f"send {topics.output}")
    assert sent["service"] == "kafka_llm_processor"
    assert sent["parent_span_id"] == consume["span_id"]
    assert sent["attributes"]["messaging.destination.name"] == topics.output
    assert sent["attributes"]["messaging.kafka.message.key"] == document.doc_id
    version, carried_trace, carried_span, flags = headers_of(result_record)["traceparent"].split(
        "-"
    )
    assert (version, carried_trace, carried_span) == ("00", trace_id, sent["span_id"])
    assert int(flags, 16) & 0x01, "sampled"
    assert consume["end_ns"] >= sent["end_ns"], "the consume span ends once the result is out"

    # The LLM service's usage event, sent from its background task, is in the call's trace too.
    usage_sent = one(trace, kind="PRODUCER", name=f"send {topics.usage}")
    assert usage_sent["service"] == "llama31_8b"
    assert server["span_id"] in ancestors(usage_sent, trace)
    assert headers_of(usage_records[0])["traceparent"].split("-")[1:3] == [
        trace_id,
        usage_sent["span_id"],
    ]


def test_a_document_that_cannot_be_read_is_dead_lettered_in_its_trace(
    receiver: OTLPReceiver, tmp_path: Path, kafka_bootstrap: str, processor_topics: ProcessorTopics
) -> None:
    topics = processor_topics
    tracing = tracing_env(receiver)
    with serve_asgi(OpenAIResponder()) as url:  # never asked: the document is not read
        processor = start_processor(kafka_bootstrap, topics, f"{url}/v1", tmp_path, tracing)
        try:
            trace_id = produce_traced(
                kafka_bootstrap, topics.input, b"poison", b"{this is not json", tracing
            )
            letters = asyncio.run(records_of(kafka_bootstrap, topics.dlq, 1, 60))
            assert len(letters) == 1, "no dead letter"

            def whole(spans: list[Span]) -> bool:
                names = {s["name"] for s in in_trace(spans, trace_id)}
                return {f"process {topics.input}", f"send {topics.dlq}"} <= names

            receiver.wait_for(whole, "the dead letter's trace", 30)
        finally:
            processor.stop()
    spans = receiver.spans()  # flushed at shutdown: every parent is in (see above)

    trace = in_trace(spans, trace_id)
    assert_whole(trace)
    producer = one(trace, kind="PRODUCER", name=f"send {topics.input}")
    consume = one(trace, kind="CONSUMER", name=f"process {topics.input}")
    assert consume["parent_span_id"] == producer["span_id"]
    assert consume["attributes"]["error.type"] == "invalid_document"
    assert consume["status"]["code"] == 2  # ERROR
    assert not [s for s in trace if s["scope"] == "pas.genai"], "no model call for it"
    sent = one(trace, kind="PRODUCER", name=f"send {topics.dlq}")
    assert sent["parent_span_id"] == consume["span_id"]
    assert headers_of(letters[0])["traceparent"].split("-")[1:3] == [trace_id, sent["span_id"]]


def test_without_an_exporter_the_processor_adds_no_trace_headers(
    tmp_path: Path, kafka_bootstrap: str, processor_topics: ProcessorTopics
) -> None:
    topics = processor_topics
    backend = OpenAIResponder()
    document = msgspec.structs.replace(documents(1)[0], task="summary")
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with serve_asgi(backend) as url:
        processor = start_processor(kafka_bootstrap, topics, f"{url}/v1", tmp_path, {})
        try:

            async def send_and_read() -> list[ConsumerRecord[bytes, bytes]]:
                producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
                await producer.start()
                try:
                    await producer.send_and_wait(
                        topics.input,
                        key=document.doc_id.encode(),
                        value=msgspec.json.encode(document),
                        headers=[("traceparent", incoming.encode())],
                    )
                finally:
                    await producer.stop()
                return await records_of(kafka_bootstrap, topics.output, 1, timeout_s=60)

            published = asyncio.run(send_and_read())
        finally:
            processor.stop()

    assert len(published) == 1
    assert msgspec.json.decode(published[0].value, type=DocumentResult).status == "ok"
    # Tracing is off: no span was made, so no context is passed on, not even the incoming one.
    assert published[0].headers == ()
    assert len(backend.headers) == 1
    assert "traceparent" not in backend.headers[0]
    assert "tracing on" not in processor.logs()


@pytest.mark.timeout(120)
def test_analytics_links_its_batch_span_to_a_usage_events_trace(
    receiver: OTLPReceiver, tmp_path: Path, kafka_bootstrap: str
) -> None:
    topics = AnalyticsTopics.for_run(uuid.uuid4().hex[:8])
    asyncio.run(
        ensure_topics(
            kafka_bootstrap,
            {
                topics.usage: 1,
                topics.workflow_results: 1,
                topics.llm_results: 1,
                topics.documents_dlq: 1,
                topics.dlq: 1,
            },
        )
    )
    tracing = tracing_env(receiver)
    collector = ServiceProcess(
        COLLECTOR_APP,
        free_port(),
        {
            **collector_environment(kafka_bootstrap, topics, tmp_path / "analytics.duckdb"),
            **tracing,
        },
        tmp_path / "collector.log",
    ).start(ready_timeout_s=60)
    try:
        event = usage_event(utc_now(), prompt_tokens=321, completion_tokens=9)
        trace_id = produce_traced(
            kafka_bootstrap,
            topics.usage,
            event["event_id"].encode(),
            msgspec.json.encode(event),
            tracing,
        )

        def linked(spans: list[Span]) -> bool:
            return any(
                link["trace_id"] == trace_id
                for s in spans
                if s["service"] == "analytics"
                for link in s["links"]
            )

        spans = receiver.wait_for(linked, "analytics' span linked to the usage event", 60)
        stored = asyncio.run(totals(collector.url))
    finally:
        collector.stop()

    producer = one(spans, kind="PRODUCER", name=f"send {topics.usage}")
    assert producer["trace_id"] == trace_id
    batch = one(spans, service="analytics", kind="CONSUMER")
    # A batch is a root of its own, linked to each record's trace rather than a child of one.
    assert batch["parent_span_id"] == ""
    assert batch["trace_id"] != trace_id
    assert batch["name"] == f"process {topics.usage}"
    attributes = batch["attributes"]
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.destination.name"] == topics.usage
    assert attributes["messaging.consumer.group.name"] == f"analytics-{topics.usage}"
    assert attributes["messaging.batch.message_count"] == 1
    [link] = batch["links"]
    assert (link["trace_id"], link["span_id"]) == (trace_id, producer["span_id"])
    assert link["attributes"]["messaging.destination.name"] == topics.usage
    assert link["attributes"]["messaging.kafka.offset"] == 0
    # The span ends once the batch is stored and committed.
    assert stored["total"]["llm_calls"] == 1, stored
