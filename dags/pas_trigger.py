"""Run a PAS workflow from Airflow (or any scheduler) through Kafka.

Publish a ``workflow.triggered`` event to ``workflow-events``; wait for the
``workflow.completed`` or ``workflow.failed`` event with the same ``event_id`` on
``workflow-results`` (the LangGraph runner answers there). Plain functions, no Airflow import:
the DAG files call them from tasks, and PAS's tests call them without Airflow. Needs only
``aiokafka`` next to Airflow.

Waiting reads ``workflow-results`` without a consumer group, from a little before the trigger
was sent (by record timestamp), so a wait that starts late (a separate task, a retry) still
finds a result published before it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

EVENT_TRIGGERED = "workflow.triggered"
EVENT_COMPLETED = "workflow.completed"
EVENT_FAILED = "workflow.failed"
CLOCK_SKEW_MS = 5 * 60 * 1000
"""How far before the trigger a result is looked for (clocks of two hosts may differ)."""
FETCH_MAX_WAIT_MS = 100
"""PAS's ``KAFKA_FETCH_MAX_WAIT_MS`` (libs/common/constants.py; this module imports nothing of
PAS's): the embedded broker hands a result over when it looks again, up to this long after."""
_EVENT_IDS = uuid.UUID("6f0b7a53-1c1e-4b55-9d87-5a3a4f1f2b10")


class WorkflowFailed(RuntimeError):
    """The runner published ``workflow.failed``: the run ended in an error (or was cancelled)."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        outcome = result.get("payload", {})
        super().__init__(
            f"workflow {result.get('workflow_id')!r} run {outcome.get('run_id')!r} failed: "
            f"{outcome.get('error')}"
        )
        self.result = dict(result)


class WorkflowTimeout(TimeoutError):
    """No result arrived in time; the run may still be going (wait again with the receipt)."""


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap_servers: str
    events_topic: str = "workflow-events"
    results_topic: str = "workflow-results"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> KafkaTarget:
        """``KAFKA_BOOTSTRAP_SERVERS`` (or the spec's ``KAFKA_BROKERS``), and the topics from
        ``RUNNER_EVENTS_TOPIC`` / ``RUNNER_RESULTS_TOPIC`` when set."""
        servers = environ.get("KAFKA_BOOTSTRAP_SERVERS") or environ.get("KAFKA_BROKERS")
        if not servers:
            raise RuntimeError("set KAFKA_BOOTSTRAP_SERVERS (host:port of the Kafka brokers)")
        return cls(
            bootstrap_servers=servers,
            events_topic=environ.get("RUNNER_EVENTS_TOPIC") or cls.events_topic,
            results_topic=environ.get("RUNNER_RESULTS_TOPIC") or cls.results_topic,
        )


def event_id_for(dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    """The same id for the same try of the same task: a trigger sent twice by one try runs
    once; a retry (a new try) is a new run."""
    return str(uuid.uuid5(_EVENT_IDS, f"{dag_id}/{run_id}/{task_id}/{try_number}"))


WORKFLOW_RUN_ID_MAX = 250
"""The runner's bound on a ``workflow_run_id`` (``WorkflowRunId``)."""


def workflow_run_id_for(dag_id: str, run_id: str) -> str:
    """``<dag_id>:<run_id>``, the key of a DAG run's workflow; when that is longer than the
    runner takes (a long DAG id and a long run id, each within Airflow's own 250), the run id's
    end is a digest of it instead: the same for every try, and never refused."""
    whole = f"{dag_id}:{run_id}"
    if len(whole) <= WORKFLOW_RUN_ID_MAX:
        return whole
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    return f"{whole[: WORKFLOW_RUN_ID_MAX - len(digest) - 1]}~{digest}"


def build_trigger(
    workflow_id: str,
    payload: Mapping[str, Any],
    *,
    workflow_run_id: str,
    event_id: str | None = None,
    source: str = "airflow",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``workflow.triggered`` event in the spec's shape."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": EVENT_TRIGGERED,
        "timestamp": datetime.now(UTC).isoformat(),
        "source": source,
        "workflow_id": workflow_id,
        "workflow_run_id": workflow_run_id,
        "payload": dict(payload),
        "metadata": dict(metadata or {}),
    }


async def publish_trigger(target: KafkaTarget, event: Mapping[str, Any]) -> dict[str, Any]:
    """Send the event (keyed by ``workflow_run_id``) and wait for the broker's acknowledgement.

    Returns the receipt to wait with: ``event_id``, ``workflow_id``, ``workflow_run_id`` and
    ``sent_at_ms`` (JSON, so it can travel as an Airflow XCom).
    """
    sent_at_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            target.events_topic,
            key=str(event["workflow_run_id"]).encode(),
            value=json.dumps(event).encode(),
        )
    finally:
        await producer.stop()
    return {
        "event_id": event["event_id"],
        "workflow_id": event["workflow_id"],
        "workflow_run_id": event["workflow_run_id"],
        "sent_at_ms": sent_at_ms,
    }


async def wait_for_result(
    target: KafkaTarget, receipt: Mapping[str, Any], timeout_s: float
) -> dict[str, Any]:
    """The result event for ``receipt``; :class:`WorkflowFailed` if it is
    ``workflow.failed``, :class:`WorkflowTimeout` if none comes within ``timeout_s``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=target.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    try:
        await _read_from(consumer, target.results_topic, int(receipt["sent_at_ms"]) - CLOCK_SKEW_MS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (remaining := deadline - loop.time()) > 0:
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for records in batches.values():
                for record in records:
                    result = _result_for(record.value, receipt["event_id"])
                    if result is None:
                        continue
                    if result["event_type"] == EVENT_FAILED:
                        raise WorkflowFailed(result)
                    return result
    finally:
        await consumer.stop()
    raise WorkflowTimeout(
        f"no result for event {receipt['event_id']} (workflow {receipt['workflow_id']!r}) "
        f"within {timeout_s:g} s"
    )


async def _read_from(consumer: AIOKafkaConsumer, topic: str, since_ms: int) -> None:
    await consumer.topics()  # fetches every topic's metadata
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise RuntimeError(f"topic {topic!r} does not exist")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    # Ends first: a partition with nothing since ``since_ms`` is read from its end as it was
    # before the lookup, so a result published meanwhile is not skipped.
    ends = await consumer.end_offsets(assigned)
    offsets = await consumer.offsets_for_times({tp: max(since_ms, 0) for tp in assigned})
    for tp in assigned:
        found = offsets.get(tp)
        consumer.seek(tp, ends[tp] if found is None else found.offset)


def _result_for(value: bytes | None, event_id: str) -> dict[str, Any] | None:
    try:
        event = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event_id") != event_id:
        return None
    if event.get("event_type") not in (EVENT_COMPLETED, EVENT_FAILED):
        return None
    return event


# -- for synchronous callers (Airflow tasks) ---------------------------------------------------


def trigger_workflow(target: KafkaTarget, event: Mapping[str, Any]) -> dict[str, Any]:
    return asyncio.run(publish_trigger(target, event))


def wait_for_workflow(
    target: KafkaTarget, receipt: Mapping[str, Any], timeout_s: float
) -> dict[str, Any]:
    return asyncio.run(wait_for_result(target, receipt, timeout_s))


def run_workflow(target: KafkaTarget, event: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    """Trigger and wait in one call."""
    return wait_for_workflow(target, trigger_workflow(target, event), timeout_s)
