"""The analytics client on a real collector process: events sent and reported back, a refusal
with the collector's reason, an unreachable collector."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.common.clients.analytics import (
    AnalyticsClient,
    AnalyticsRefused,
    AnalyticsUnavailable,
)
from libs.common.schemas.usage import EventBatch, WorkflowRun, new_usage_event
from tests.support.analytics_collector import start_collector
from tests.support.processes import ServiceProcess, ServiceProcesses, free_port


@pytest.fixture
def collector(service_processes: ServiceProcesses, tmp_path: Path) -> ServiceProcess:
    return start_collector(service_processes, tmp_path)


async def test_events_sent_are_reported_and_a_bad_window_is_refused(
    collector: ServiceProcess,
) -> None:
    batch = EventBatch(
        usage=[
            new_usage_event(
                service="provider_router",
                provider="local",
                model="smollm2",
                status="ok",
                prompt_tokens=10,
                completion_tokens=5,
                cost_usd=0.002,
                workflow_id="probe",
            )
        ],
        runs=[
            WorkflowRun(
                run_id="r1",
                workflow_id="probe",
                status="success",
                timestamp=datetime.now(UTC),
                duration_ms=120.0,
            )
        ],
    )

    async with AnalyticsClient(collector.url) as client:
        first = await client.send_events(batch)
        again = await client.send_events(batch)
        costs = await client.cost_report("model")
        workflows = await client.workflow_report()
        with pytest.raises(AnalyticsRefused) as refused:
            await client.cost_report(start="yesterday")

    assert (first.received, first.stored, first.duplicates) == (2, 2, 0)
    assert (again.stored, again.duplicates) == (0, 2)
    assert [(line.key, line.llm_calls, line.total_tokens) for line in costs.groups] == [
        ("smollm2", 1, 15)
    ]
    assert [(w.workflow_id, w.runs, w.successes) for w in workflows.workflows] == [("probe", 1, 1)]
    assert refused.value.status_code == 400
    assert "yesterday" in refused.value.detail
    assert str(refused.value).startswith("analytics answered 400: ")


async def test_an_unreachable_collector_is_unavailable() -> None:
    async with AnalyticsClient(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client:
        with pytest.raises(AnalyticsUnavailable, match="ConnectError"):
            await client.send_events(EventBatch())
