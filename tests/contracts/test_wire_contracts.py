"""Wire contracts: what each producer puts on a topic, each consumer of that topic reads right.

Every (topic, producer, consumer) pair is listed in :data:`CONTRACTS`, each with a check that
encodes a realistic, fully populated record the way the producer does (its own types, builders
and encoder) and decodes it the way the consumer does (its own decoder), then asserts that the
fields the consumer uses arrive with the right values. Two guards keep the list whole: every
topic PAS creates has a contract, and every service whose settings name a topic is a party to
one of that topic's contracts; so a new consumer (or producer) fails here until it is added.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from aiokafka import ConsumerRecord

import dags.pas_airflow.llm_results as dag_llm_results
import dags.pas_trigger as dag_trigger
import libs.common.constants as constants
import libs.common.kafka.usage_publisher as usage_publisher
import services.analytics.consumer as analytics_consumer
import services.kafka_llm_processor.answering as processor_answering
import services.kafka_llm_processor.processor as processor
import services.langgraph_runner.bridge as runner_bridge
import services.langgraph_runner.outcomes as runner_outcomes
import services.versioning.outcome_consumer as versioning_consumer
from libs.common.kafka.records import dead_letter
from libs.common.kafka.topics import PAS_TOPICS
from libs.common.schemas.documents import (
    DeadLetter,
    DocumentResult,
    FinancialDocument,
    KeyFigure,
    Sentiment,
    processor_run_id,
    processor_workflow_id,
)
from libs.common.schemas.usage import UsageEvent, WorkflowRun, new_usage_event
from libs.common.schemas.workflows import (
    LLMUsage,
    RunStatus,
    WorkflowParameters,
    WorkflowTriggered,
)
from services.analytics.decoding import SKIPPED, decode
from services.kafka_llm_processor.send_samples import sample_documents
from services.kafka_llm_processor.show_results import describe
from services.langgraph_runner.store import RunRecord
from services.versioning.experiments import RunOutcome as VersioningOutcome

REPO = Path(__file__).resolve().parents[2]
STARTED = datetime(2026, 3, 2, 9, 30, 0, 250_000, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=4, milliseconds=125)
RECEIVED = FINISHED + timedelta(seconds=1)
"""When the consumer got the record (the broker's timestamp)."""


# -- producers: records built as the producing service builds them ----------------------------


def runner_run(*, status: str = "success", kafka: bool = True) -> RunRecord:
    """A run of an experiment that ended, every field set, as the runner stores it."""
    failed = status == "error"
    return RunRecord(
        run=RunStatus(
            run_id="3f2a9c1e7b5d4e0f",
            workflow_id="document_analysis",
            status=status,  # type: ignore[arg-type]
            input={"content": "Q3 revenue rose 12% to $94.9bn.", "title": "AAPL Q3"},
            output=None if failed else {"summary": "Revenue up 12%.", "sentiment": "positive"},
            error="node 'analyse' failed: ReadTimeout: LLM timed out" if failed else None,
            steps=2,
            path=["analyse", "structure"],
            attempts=2,
            created_at=STARTED - timedelta(seconds=1),
            started_at=STARTED,
            finished_at=FINISHED,
            updated_at=FINISHED,
            source="airflow" if kafka else "http",
            event_id="6b1d3f0e-8a9b-5c4d-9e2f-1a2b3c4d5e6f" if kafka else None,
            workflow_run_id="pas_document_analysis:manual__2026-03-02T09:30:00+00:00"
            if kafka
            else None,
            parameters=WorkflowParameters(
                version="2",
                model="llama3.1:8b",
                temperature=0.2,
                max_tokens=512,
                prompts={"analyse": "Summarise for the desk."},
            ),
            usage=LLMUsage(calls=3, prompt_tokens=812, completion_tokens=240, cost_usd=0.00177),
            score=None if failed else 0.82,
            metadata={
                "dag_id": "pas_document_analysis",
                "experiment_id": "exp_1c9e0a7b3d2f",
                "variant": "B",
                "unit": "10-K-AAPL-2024",
                "workflow_version": 2,
            },
        ),
        owner="runner-a",
        report=True,
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    )


def runner_result(record: RunRecord) -> bytes:
    """The runner's ``workflow.completed`` / ``workflow.failed``, encoded as it publishes it."""
    return runner_outcomes._encode(runner_outcomes.outcome_event(record))


def usage_event(service: str, provider: str, cost: float) -> UsageEvent:
    return new_usage_event(
        service=service,
        provider=provider,
        model="gpt-4o-mini",
        status="ok",
        prompt_tokens=812,
        completion_tokens=240,
        latency_ms=1834.5,
        cost_usd=cost,
        request_id="req-5b2e",
        capability="reasoning",
        workflow_id="document_analysis",
        run_id="3f2a9c1e7b5d4e0f",
        error=None,
    )


def document_result() -> DocumentResult:
    return DocumentResult(
        doc_id="10-K-AAPL-2024",
        task="key_figures",
        status="ok",
        answer='{"key_figures": [{"name": "revenue", "value": "$94.9bn"}]}',
        key_figures=[KeyFigure(name="revenue", value="$94.9bn")],
        sentiment=Sentiment(label="positive", reason="revenue grew"),
        model="llama3.1:8b",
        prompt_tokens=640,
        completion_tokens=58,
        processing_ms=2210.4,
        attempts=2,
        source_offset="financial-documents/4/1287",
        processed_at=FINISHED,
    )


def consumed(topic: str, key: bytes | None, value: bytes, offset: int = 1287) -> ConsumerRecord:
    """A record as a consumer receives it (the input of a producer of dead letters)."""
    return ConsumerRecord(
        topic=topic,
        partition=4,
        offset=offset,
        timestamp=int(STARTED.timestamp() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value),
        headers=[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
    )


def document() -> FinancialDocument:
    return msgspec.structs.replace(sample_documents()[0], task="key_figures")


# -- the checks, one per (topic, producer, consumer) -------------------------------------------


def runner_results_to_versioning() -> None:
    for kafka in (True, False):
        for status in ("success", "error"):
            record = runner_run(status=status, kafka=kafka)
            run = record.run
            found = versioning_consumer.read_event(runner_result(record))
            assert isinstance(found, VersioningOutcome), found
            assert found.experiment_id == "exp_1c9e0a7b3d2f"
            assert found.workflow_id == run.workflow_id
            assert found.unit == "10-K-AAPL-2024"
            assert found.variant == "B"
            assert found.workflow_version == 2
            assert found.success is (status == "success")
            assert found.latency_ms == 4125.0
            assert found.cost == pytest.approx(0.00177)
            assert found.score == (0.82 if status == "success" else None)
            # One key per run whichever way it was started: what REST reports use too.
            assert found.key == (run.workflow_run_id if kafka else run.run_id)
            assert found.key == runner_outcomes.outcome_key(run)
    cancelled = runner_run(status="cancelled")
    assert versioning_consumer.read_event(runner_result(cancelled)) is None


def runner_results_to_analytics() -> None:
    for kafka in (True, False):
        for status in ("success", "error"):
            record = runner_run(status=status, kafka=kafka)
            found = decode("workflow_results", runner_result(record), RECEIVED)
            assert isinstance(found, WorkflowRun), found
            assert found.run_id == runner_outcomes.outcome_key(record.run)
            assert found.workflow_id == "document_analysis"
            assert found.status == status
            assert found.timestamp == FINISHED
            assert found.duration_ms == 4125.0
            assert found.source == "workflow-results"
            assert found.error == record.run.error
    cancelled = runner_run(status="cancelled")
    assert decode("workflow_results", runner_result(cancelled), RECEIVED) is SKIPPED


def runner_results_to_dags() -> None:
    success = runner_run()
    event_id = success.run.event_id
    assert event_id is not None
    found = dag_trigger._result_for(runner_result(success), event_id)
    assert found is not None
    assert found["event_type"] == dag_trigger.EVENT_COMPLETED
    assert found["payload"]["output"] == success.run.output
    assert dag_trigger._result_for(runner_result(success), "another-event") is None
    failure = runner_run(status="error")
    found = dag_trigger._result_for(runner_result(failure), event_id)
    assert found is not None
    assert found["event_type"] == dag_trigger.EVENT_FAILED
    message = str(dag_trigger.WorkflowFailed(found))
    assert "3f2a9c1e7b5d4e0f" in message
    assert "LLM timed out" in message
    # A run started over REST answers under its own id: no DAG's event id.
    rest = runner_run(kafka=False)
    assert dag_trigger._result_for(runner_result(rest), event_id) is None


def dag_trigger_to_runner() -> None:
    event = dag_trigger.build_trigger(
        "document_analysis",
        {"content": "Q3 revenue rose 12%.", "title": "AAPL Q3", "doc_type": "earnings_report"},
        workflow_run_id="pas_document_analysis:manual__2026-03-02T09:30:00+00:00",
        event_id=dag_trigger.event_id_for("pas_document_analysis", "manual__x", "trigger", 1),
        metadata={"dag_id": "pas_document_analysis", "task_id": "trigger", "try": 1},
    )
    found = runner_bridge._decode_event(json.dumps(event).encode())  # as publish_trigger sends
    assert isinstance(found, WorkflowTriggered)
    assert found.event_id == event["event_id"]
    assert found.workflow_id == "document_analysis"
    assert found.workflow_run_id == event["workflow_run_id"]
    assert found.payload == event["payload"]
    assert found.metadata == event["metadata"]
    assert found.source == "airflow"
    assert found.timestamp.tzinfo is not None


def usage_to_analytics(service: str, provider: str, cost: float) -> Callable[[], None]:
    def check() -> None:
        event = usage_event(service, provider, cost)
        found = decode("usage", usage_publisher._encode(event), RECEIVED)
        assert isinstance(found, UsageEvent)
        # The collector stores every field. Compared field by field: it reads an event that
        # holds no NUL into a UsageEvent subclass (the same fields, decoded without the regex).
        assert msgspec.structs.asdict(found) == msgspec.structs.asdict(event)

    return check


def processor_results_to_analytics() -> None:
    result = document_result()
    found = decode("llm_results", processor._encode(result), RECEIVED)
    assert isinstance(found, WorkflowRun)
    assert found.run_id == processor_run_id("10-K-AAPL-2024", "financial-documents/4/1287")
    assert found.workflow_id == processor_workflow_id("key_figures")
    assert found.status == "success"
    assert found.timestamp == FINISHED
    assert found.duration_ms == 2210.4
    assert found.source == "llm-results"


def processor_results_to_results_viewer() -> None:
    result = document_result()
    found = msgspec.json.decode(processor._encode(result), type=DocumentResult)
    assert found == result
    shown = describe(found)
    assert "10-K-AAPL-2024" in shown
    assert "revenue: $94.9bn" in shown
    assert "640+58 tokens" in shown


def processor_results_to_dags() -> None:
    result = document_result()
    record = consumed(constants.TOPIC_LLM_RESULTS, b"10-K-AAPL-2024", processor._encode(result))
    # The Kafka provider's trigger hands the apply function a confluent_kafka.Message: the same
    # four readers as methods.
    message = SimpleNamespace(
        value=lambda: record.value,
        topic=lambda: record.topic,
        partition=lambda: record.partition,
        offset=lambda: record.offset,
    )
    event = dag_llm_results.document_result(message)
    assert event is not None
    assert (event["doc_id"], event["task"], event["status"], event["model"]) == (
        "10-K-AAPL-2024",
        "key_figures",
        "ok",
        "llama3.1:8b",
    )
    assert event["message"] == f"{constants.TOPIC_LLM_RESULTS}[4]@1287"
    # A message nested past what json reads is skipped too (its RecursionError stopped the
    # watcher, and every result after it went unseen).
    deep = SimpleNamespace(**{**vars(message), "value": lambda: b"[" * 100_000})
    assert dag_llm_results.document_result(deep) is None


def documents_to_processor() -> None:
    sent = document()
    # As the sample sender sends it, as the processor reads it.
    found = processor_answering._decode_document(msgspec.json.encode(sent))
    assert found == sent


def processor_letter() -> tuple[FinancialDocument, DeadLetter]:
    sent = document()
    record = consumed(
        constants.TOPIC_FINANCIAL_DOCUMENTS, sent.doc_id.encode(), msgspec.json.encode(sent)
    )
    letter = dead_letter(
        record,
        error="TransientLLMError: 503 from upstream",
        error_type="TransientLLMError",
        attempts=5,
    )
    return sent, letter


def processor_dlq_to_analytics() -> None:
    sent, letter = processor_letter()
    found = decode("documents_dlq", processor._encode(letter), RECEIVED)
    assert isinstance(found, WorkflowRun)
    assert found.run_id == processor_run_id(sent.doc_id, "financial-documents/4/1287")
    assert found.workflow_id == processor_workflow_id("key_figures")
    assert found.status == "error"
    assert found.timestamp == letter.failed_at
    assert found.error == "TransientLLMError: TransientLLMError: 503 from upstream"
    assert found.source == "documents-dlq"
    # A document that is not UTF-8 under a key that is not either: its letter keeps both exactly
    # beside their text, and analytics still counts a failed run of its task, by the key's text.
    title = sent.title.encode()
    latin1 = msgspec.json.encode(sent).replace(title, title + "é".encode("latin-1"))
    record = consumed(constants.TOPIC_FINANCIAL_DOCUMENTS, b"\xffdoc", latin1)
    binary = dead_letter(record, error="not UTF-8", error_type="invalid_document", attempts=0)
    assert (binary.original_base64, binary.key_base64) == (latin1, b"\xffdoc")
    found = decode("documents_dlq", processor._encode(binary), RECEIVED)
    assert isinstance(found, WorkflowRun)
    assert found.run_id == processor_run_id("\ufffddoc", "financial-documents/4/1287")
    assert found.workflow_id == processor_workflow_id("key_figures")


def processor_dlq_to_results_viewer() -> None:
    sent, letter = processor_letter()
    found = msgspec.json.decode(processor._encode(letter), type=DeadLetter)
    assert found.key == sent.doc_id
    assert found.error_type == "TransientLLMError"
    assert found.error == "TransientLLMError: 503 from upstream"


def letter_to_operators(
    encode: Callable[[DeadLetter], bytes], topic: str, original: bytes
) -> Callable[[], None]:
    """An operator (or a tool replaying the DLQ) reads the envelope and the original bytes."""

    def check() -> None:
        record = consumed(topic, b"the-key", original, offset=77)
        letter = dead_letter(record, error="why it failed", error_type="invalid", attempts=1)
        found = msgspec.json.decode(encode(letter), type=DeadLetter)
        assert found == letter
        assert found.original.encode() == original
        assert (found.topic, found.partition, found.offset, found.key) == (
            topic,
            4,
            77,
            "the-key",
        )
        assert found.headers["traceparent"].startswith("00-4bf92f")

    return check


# -- the list ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contract:
    topic: str
    producer: str
    """The producing party: a service folder, ``dags`` or ``users``."""
    consumer: str
    """The consuming party: a service folder, ``dags`` or ``operators``."""
    what: str
    check: Callable[[], None]


CONTRACTS: list[Contract] = [
    Contract(
        constants.TOPIC_WORKFLOW_RESULTS,
        "langgraph_runner",
        "versioning",
        "WorkflowResult (REST- and Kafka-started runs) -> outcome_consumer.read_event",
        runner_results_to_versioning,
    ),
    Contract(
        constants.TOPIC_WORKFLOW_RESULTS,
        "langgraph_runner",
        "analytics",
        "WorkflowResult -> decoding.decode('workflow_results')",
        runner_results_to_analytics,
    ),
    Contract(
        constants.TOPIC_WORKFLOW_RESULTS,
        "langgraph_runner",
        "dags",
        "WorkflowResult -> pas_trigger.wait_for_result",
        runner_results_to_dags,
    ),
    Contract(
        constants.TOPIC_WORKFLOW_EVENTS,
        "dags",
        "langgraph_runner",
        "pas_trigger.build_trigger -> bridge's WorkflowTriggered",
        dag_trigger_to_runner,
    ),
    Contract(
        constants.TOPIC_LLM_USAGE,
        "provider_router",
        "analytics",
        "new_usage_event (priced) -> decoding.decode('usage')",
        usage_to_analytics("provider_router", "openai", 0.00177),
    ),
    Contract(
        constants.TOPIC_LLM_USAGE,
        "llm",
        "analytics",
        "new_usage_event -> decoding.decode('usage')",
        usage_to_analytics("llama31_8b", "embedded", 0.0),
    ),
    Contract(
        constants.TOPIC_LLM_RESULTS,
        "kafka_llm_processor",
        "analytics",
        "DocumentResult -> decoding.decode('llm_results')",
        processor_results_to_analytics,
    ),
    Contract(
        constants.TOPIC_LLM_RESULTS,
        "kafka_llm_processor",
        "kafka_llm_processor",
        "DocumentResult -> the results viewer (show_results.py)",
        processor_results_to_results_viewer,
    ),
    Contract(
        constants.TOPIC_LLM_RESULTS,
        "kafka_llm_processor",
        "dags",
        "DocumentResult -> pas_airflow.llm_results.document_result (pas_on_llm_result's watcher)",
        processor_results_to_dags,
    ),
    Contract(
        constants.TOPIC_FINANCIAL_DOCUMENTS,
        "kafka_llm_processor",
        "kafka_llm_processor",
        "FinancialDocument (the sample sender, send_samples.py) -> the processor",
        documents_to_processor,
    ),
    Contract(
        constants.TOPIC_FINANCIAL_DOCUMENTS_DLQ,
        "kafka_llm_processor",
        "analytics",
        "DeadLetter -> decoding.decode('documents_dlq')",
        processor_dlq_to_analytics,
    ),
    Contract(
        constants.TOPIC_FINANCIAL_DOCUMENTS_DLQ,
        "kafka_llm_processor",
        "kafka_llm_processor",
        "DeadLetter -> the results viewer (show_results.py --dlq)",
        processor_dlq_to_results_viewer,
    ),
    Contract(
        constants.TOPIC_WORKFLOW_EVENTS_DLQ,
        "langgraph_runner",
        "operators",
        "DeadLetter of a workflow-events record",
        letter_to_operators(
            runner_bridge._encode, constants.TOPIC_WORKFLOW_EVENTS, b'{"event_type": "nope"}'
        ),
    ),
    Contract(
        constants.TOPIC_ANALYTICS_DLQ,
        "analytics",
        "operators",
        "DeadLetter of an undecodable record",
        letter_to_operators(analytics_consumer._encode, constants.TOPIC_LLM_USAGE, b"{not json"),
    ),
    Contract(
        constants.TOPIC_VERSIONING_DLQ,
        "versioning",
        "operators",
        "DeadLetter of a result event that is no outcome",
        letter_to_operators(
            versioning_consumer._encode,
            constants.TOPIC_WORKFLOW_RESULTS,
            runner_result(runner_run()),
        ),
    ),
]


@pytest.mark.parametrize(
    "contract", CONTRACTS, ids=[f"{c.topic}:{c.producer}->{c.consumer}" for c in CONTRACTS]
)
def test_what_the_producer_writes_the_consumer_reads(contract: Contract) -> None:
    contract.check()


def test_every_topic_has_a_contract() -> None:
    assert {c.topic for c in CONTRACTS} == set(PAS_TOPICS)


_TOPIC_SETTING = re.compile(r"^\s+\w+: \w+ = (TOPIC_\w+)\b", re.MULTILINE)


def test_every_service_that_names_a_topic_is_a_party_to_its_contracts() -> None:
    parties = {(c.topic, side) for c in CONTRACTS for side in (c.producer, c.consumer)}
    missing = []
    for settings in sorted(REPO.glob("services/*/settings.py")):
        service = settings.parent.name
        for constant in _TOPIC_SETTING.findall(settings.read_text()):
            topic = getattr(constants, constant)
            if (topic, service) not in parties:
                missing.append(f"{service} uses {topic}")
    assert not missing, f"add the contracts of: {missing}"
