"""Outcomes of experiment runs arrive from ``workflow-results`` on a real broker.

Each test has topics and a consumer group of its own, so tests never read each other's events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from litestar import Litestar
from litestar.testing import AsyncTestClient

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.documents import DeadLetter
from libs.common.schemas.versioning import Experiment
from services.versioning.app import create_app
from services.versioning.settings import VersioningSettings
from tests.support.metrics_text import sample_value
from tests.support.polling import poll_async
from tests.support.topic_reader import read_from_start
from tests.support.unreadable_records import RawRecord, send_one_batch
from tests.versioning.conftest import WORKFLOW, Client, create_version


class Topics(msgspec.Struct, frozen=True):
    results: str
    dlq: str
    group: str


@pytest.fixture
async def topics(kafka_bootstrap: str) -> Topics:
    run = uuid.uuid4().hex[:8]
    names = Topics(results=f"workflow-results-{run}", dlq=f"versioning-dlq-{run}", group=f"v-{run}")
    await ensure_topics(kafka_bootstrap, {names.results: 3, names.dlq: 1})
    return names


@pytest.fixture
def consuming_settings(
    versioning_settings: VersioningSettings, kafka_bootstrap: str, topics: Topics
) -> VersioningSettings:
    return msgspec.structs.replace(
        versioning_settings,
        bootstrap_servers=kafka_bootstrap,
        results_topic=topics.results,
        dlq_topic=topics.dlq,
        group_id=topics.group,
        # The embedded broker holds a (re)join for about the session timeout.
        kafka_session_timeout_ms=2000,
    )


def completed(
    experiment: Experiment,
    unit: str,
    *,
    run_id: str,
    status: str = "success",
    metadata: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A run's result event as the LangGraph runner publishes it (its ``WorkflowResult``),
    with the experiment fields the versioning client's ``RunPlan.event_metadata()`` gives."""
    variant = experiment.variant_for(unit)
    version = experiment.variants[variant]
    return {
        "event_id": uuid.uuid4().hex,
        "event_type": "workflow.completed" if status == "success" else "workflow.failed",
        "timestamp": "2026-01-05T10:00:01Z",
        "source": "langgraph_runner",
        "workflow_id": experiment.workflow_id,
        "workflow_run_id": run_id,
        "payload": {
            "run_id": run_id,
            "status": status,
            "output": {"summary": "..."} if status == "success" else None,
            "error": None if status == "success" else "LLM timed out",
            "steps": 3,
            "started_at": "2026-01-05T10:00:00Z",
            "finished_at": "2026-01-05T10:00:01Z",
            "duration_ms": 1200.0 if status == "success" else 300.0,
            "parameters_version": str(version),
            "usage": {"calls": 2, "prompt_tokens": 900, "completion_tokens": 120},
            **(payload or {}),
        },
        "metadata": {
            "experiment_id": experiment.id,
            "variant": variant,
            "unit": unit,
            "workflow_version": version,
            "runner_instance": "r1",
            **(metadata or {}),
        },
    }


async def publish(
    bootstrap: str, topic: str, events: list[dict[str, Any]], raw: dict[str, bytes] | None = None
) -> None:
    """Events keyed by run id, as the runner publishes them; ``raw`` values keyed as given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            key = str(event.get("workflow_run_id", "")).encode()
            await producer.send(topic, key=key, value=msgspec.json.encode(event))
        for name, value in (raw or {}).items():
            await producer.send(topic, key=name.encode(), value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def committed(bootstrap: str, topics: Topics) -> int:
    """How many events the version manager's group has committed, over all partitions."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.group)
    await probe.start()
    try:
        offsets = [await probe.committed(TopicPartition(topics.results, p)) for p in range(3)]
    finally:
        await probe.stop()
    return sum(offset or 0 for offset in offsets)


async def wait_until_committed(bootstrap: str, topics: Topics, events: int) -> None:
    """Offsets are committed only after a batch is stored: once all are, all is counted."""

    async def done() -> bool:
        return await committed(bootstrap, topics) == events

    committed_all = await poll_async(done, interval_s=0.1)
    assert committed_all, f"the version manager did not commit {events} events"


async def two_versions_in_an_experiment(service: Client) -> Experiment:
    """Versions 1 and 2 of the workflow, and an experiment splitting runs between them."""
    await create_version(service)
    await create_version(service)
    answer = await service.post(
        "/experiments", json={"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 2}}
    )
    return msgspec.convert(answer.json(), Experiment)


async def test_runs_on_kafka_become_outcomes_and_bad_ones_go_to_the_dlq(
    consuming_settings: VersioningSettings,
    open_app: Callable[[Litestar], Any],
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    service: Client = await open_app(create_app(consuming_settings))
    experiment = await two_versions_in_an_experiment(service)
    good = [
        completed(experiment, f"doc-{n}", run_id=f"run-{n}", status="error" if n % 4 else "success")
        for n in range(40)
    ]
    redelivered = good[5]  # at-least-once delivery may bring an event twice
    # A failed run resumed by an operator publishes again under its run id: the latest counts.
    resumed = completed(experiment, "doc-1", run_id="run-1", status="success")
    cancelled = completed(experiment, "doc-77", run_id="run-77", status="cancelled")
    unrelated = {"event_type": "workflow.completed", "workflow_id": WORKFLOW, "metadata": {}}
    wrong_unit = "doc-0"
    wrong_variant = "B" if experiment.variant_for(wrong_unit) == "A" else "A"
    bad = {
        "not-json": b"{this is not json",
        # Past a decoder's depth (a RecursionError, not a DecodeError): refused alike.
        "too-deep": b'{"metadata": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        "wrong-variant": msgspec.json.encode(
            completed(experiment, wrong_unit, run_id="x1", metadata={"variant": wrong_variant})
        ),
        "unknown-experiment": msgspec.json.encode(
            completed(experiment, "doc-1", run_id="x2", metadata={"experiment_id": "exp_gone"})
        ),
        "no-duration": msgspec.json.encode(
            completed(experiment, "doc-2", run_id="x3", payload={"duration_ms": None})
        ),
        "wrong-version": msgspec.json.encode(
            completed(experiment, "doc-3", run_id="x4", metadata={"workflow_version": 9})
        ),
    }
    events = [*good, redelivered, resumed, cancelled, unrelated]
    await publish(kafka_bootstrap, topics.results, events, bad)

    await wait_until_committed(kafka_bootstrap, topics, len(events) + len(bad))

    detail = (await service.get(f"/experiments/{experiment.id}")).json()
    assert detail["results"]["total"] == 40, "each run once; cancelled and unrelated runs none"
    latest = {e["workflow_run_id"]: e for e in [*good, resumed]}
    by_variant = {v["variant"]: v for v in detail["results"]["variants"]}
    for variant in ("A", "B"):
        runs = [e for e in latest.values() if e["metadata"]["variant"] == variant]
        assert by_variant[variant]["count"] == len(runs)
        assert by_variant[variant]["successes"] == sum(
            e["event_type"] == "workflow.completed" for e in runs
        )
    letters = [
        msgspec.json.decode(v, type=DeadLetter)
        for v in await read_from_start(
            kafka_bootstrap, topics.dlq, attrgetter("value"), want=len(bad), timeout_s=30
        )
    ]
    by_key = {letter.key: letter for letter in letters}
    assert set(by_key) == set(bad)
    assert by_key["not-json"].error_type == "invalid_event"
    assert by_key["not-json"].original == "{this is not json"
    assert by_key["too-deep"].error_type == "invalid_event"
    assert "nested too deep to read" in by_key["too-deep"].error
    assert by_key["wrong-variant"].error_type == "variant_mismatch"
    assert by_key["unknown-experiment"].error_type == "unknown_experiment"
    assert by_key["no-duration"].error_type == "invalid_outcome"
    assert "duration_ms" in by_key["no-duration"].error
    assert by_key["wrong-version"].error_type == "version_mismatch"
    # Refused as they were read or by the experiment's checks: none was recorded.
    assert {letter.attempts for letter in letters} == {0}
    health = (await service.get("/health")).json()
    assert health["details"]["outcomes_consumer"]["connected"] is True


async def test_a_restarted_consumer_does_not_count_runs_twice(
    consuming_settings: VersioningSettings, kafka_bootstrap: str, topics: Topics
) -> None:
    async def counted(client: Client, experiment_id: str) -> int:
        detail = (await client.get(f"/experiments/{experiment_id}")).json()
        return int(detail["results"]["total"])

    async with AsyncTestClient(app=create_app(consuming_settings)) as first:
        experiment = await two_versions_in_an_experiment(first)
        events = [completed(experiment, f"u{n}", run_id=f"r{n}") for n in range(10)]
        await publish(kafka_bootstrap, topics.results, events)
        await wait_until_committed(kafka_bootstrap, topics, 10)
        assert await counted(first, experiment.id) == 10

    # The same runs published again (a producer retry), and one more, to a new instance.
    async with AsyncTestClient(app=create_app(consuming_settings)) as second:
        await publish(
            kafka_bootstrap,
            topics.results,
            [*events[:5], completed(experiment, "u10", run_id="r10")],
        )
        await wait_until_committed(kafka_bootstrap, topics, 16)
        assert await counted(second, experiment.id) == 11, "five runs seen twice, counted once"


async def test_an_event_with_a_header_name_not_utf8_is_dead_lettered_and_the_rest_counted(
    consuming_settings: VersioningSettings,
    open_app: Callable[[Litestar], Any],
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    """aiokafka cannot build a record whose header name is not UTF-8: its ``getmany`` raised
    on it at every try, and the consumer restarted and failed on it for good, counting nothing
    after it. It goes to the DLQ with its coordinates; the runs around it are counted."""
    service: Client = await open_app(create_app(consuming_settings))
    experiment = await two_versions_in_an_experiment(service)
    runs = {n: completed(experiment, f"doc-{n}", run_id=f"run-{n}") for n in range(8)}
    bad = runs.pop(2)

    def raw(event: dict[str, Any], *headers: tuple[bytes, bytes]) -> RawRecord:
        key = str(event["workflow_run_id"]).encode()
        return RawRecord(key, msgspec.json.encode(event), [(b"source", b"runner"), *headers])

    # Partition 0: a run alone (offset 0), one batch whose middle record has a header name
    # aiokafka cannot decode (1, 2, 3), one more alone (4); then runs on the other partitions.
    await send_one_batch(kafka_bootstrap, topics.results, 0, [raw(runs[0])])
    await send_one_batch(
        kafka_bootstrap,
        topics.results,
        0,
        [raw(runs[1]), raw(bad, (b"\xff\xfetrace", b"t-1")), raw(runs[3])],
    )
    for partition, numbers in ((0, [4]), (1, [5, 6]), (2, [7])):
        for n in numbers:
            await send_one_batch(kafka_bootstrap, topics.results, partition, [raw(runs[n])])

    await wait_until_committed(kafka_bootstrap, topics, len(runs) + 1)

    detail = (await service.get(f"/experiments/{experiment.id}")).json()
    assert detail["results"]["total"] == len(runs)
    [value] = await read_from_start(
        kafka_bootstrap, topics.dlq, attrgetter("value"), want=1, timeout_s=30
    )
    letter = msgspec.json.decode(value, type=DeadLetter)
    assert (letter.topic, letter.partition, letter.offset) == (topics.results, 0, 2)
    assert letter.error_type == "header_name_not_utf8"
    assert letter.error.startswith("record unreadable: header name not UTF-8")
    assert letter.key == "run-2"
    assert msgspec.json.decode(letter.original) == bad
    assert letter.headers == {"source": "runner", "\ufffd\ufffdtrace": "t-1"}
    metrics = (await service.get("/metrics")).text
    dead_lettered = "pas_versioning_events_dead_lettered_total"
    assert sample_value(metrics, dead_lettered, reason="header_name_not_utf8") == 1
