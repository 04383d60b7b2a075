"""The rest of the loop on the running PAS: a workflow triggered through Kafka, as an Airflow
DAG triggers it, then what the analytics collector saw of everything that ran.

Run by ``scripts/run_pipeline.sh``; on its own: ``.venv/bin/python -m scripts.workflow_demo``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any, ClassVar

from dags.pas_trigger import KafkaTarget, WorkflowFailed, build_trigger, run_workflow
from libs.common.clients.analytics import AnalyticsClient, AnalyticsError
from libs.common.constants import ANALYTICS_PORT, KAFKA_PORT
from libs.common.settings import BaseSettings, load_settings_or_exit
from services.kafka_llm_processor.send_samples import sample_documents


class DemoSettings(BaseSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = ""
    env_aliases: ClassVar = {"bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS")}

    bootstrap_servers: str = f"127.0.0.1:{KAFKA_PORT}"
    analytics_url: str = f"http://localhost:{ANALYTICS_PORT}"
    workflow_timeout_s: float = 300.0


def trigger_document_analysis(settings: DemoSettings) -> bool:
    document = sample_documents()[0]
    event = build_trigger(
        "document_analysis",
        {"title": document.title, "doc_type": document.doc_type, "content": document.content},
        workflow_run_id=f"demo-{uuid.uuid4().hex[:8]}",
        source="pas-demo",
        metadata={"unit": document.doc_id},
    )
    print(f"workflow.triggered document_analysis for {document.doc_id!r} on workflow-events")
    started = time.perf_counter()
    try:
        result = run_workflow(
            KafkaTarget(settings.bootstrap_servers), event, settings.workflow_timeout_s
        )
    except (WorkflowFailed, TimeoutError) as exc:
        print(f"  the workflow did not complete: {exc}")
        return False
    payload: dict[str, Any] = result.get("payload", {})
    print(
        f"  {result['event_type']} in {time.perf_counter() - started:.1f} s "
        f"(event_id {result['event_id']}, workflow_run_id {result['workflow_run_id']})"
    )
    print("  " + json.dumps(payload.get("output"), indent=2).replace("\n", "\n  "))
    return True


async def show_analytics(settings: DemoSettings) -> None:
    async with AnalyticsClient(settings.analytics_url, timeout_s=10.0) as analytics:
        # The collector consumes asynchronously; give the last results a moment to land.
        await asyncio.sleep(3)
        workflows = (await analytics.workflow_report()).workflows
        costs = await analytics.cost_report("model")
    print(f"\nanalytics collector ({settings.analytics_url}/dashboard), last 24 hours:")
    print(f"  {'workflow':<40} {'runs':>5} {'success':>8} {'p50 ms':>9}")
    for row in workflows:
        rate = row.success_rate
        p50 = row.duration_ms.p50
        print(
            f"  {row.workflow_id:<40} {row.runs:>5} "
            f"{'-' if rate is None else f'{rate:.0%}':>8} {'-' if p50 is None else f'{p50:.0f}':>9}"
        )
    print(f"  {'model':<40} {'calls':>5} {'tokens':>8} {'cost $':>9}")
    for line in costs.groups:
        print(
            f"  {line.key or '-':<40} {line.llm_calls:>5} {line.total_tokens:>8} "
            f"{line.cost_usd:>9.4f}"
        )


def main() -> int:
    settings = load_settings_or_exit(DemoSettings)
    completed = trigger_document_analysis(settings)
    try:
        asyncio.run(show_analytics(settings))
    except AnalyticsError as exc:
        print(f"analytics collector: {exc}")
        return 1
    return 0 if completed else 1


if __name__ == "__main__":
    sys.exit(main())
