"""Every PromQL query of every Grafana dashboard and every alert rule, against a real
Prometheus scraping every PAS service as a real process (the LLM service on the embedded
model, the Kafka consumers on the embedded broker).

A query may have no series yet (no run has failed, no circuit opened), but Prometheus must take
it, and every metric it names must be one a service exposes: a renamed metric, or a counter
without its ``_total``, would otherwise leave a panel empty and an alert silent for good. The
rules are also loaded into that Prometheus, which must evaluate each of them without error.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.kafka.topics import ensure_topics
from tests.analytics.conftest import COLLECTOR_APP, Topics, collector_environment
from tests.support.polling import poll
from tests.support.processes import ServiceProcess, free_port
from tests.support.prometheus import (
    ALERT_RULES,
    SCRAPE_SERIES,
    Prometheus,
    PromQLError,
    alert_rules,
    dashboard_queries,
    exposed_metric_names,
    metric_names,
    prometheus_config,
    prometheus_installed,
    rule_queries,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not prometheus_installed(),
        reason="needs Debian's prometheus package (prometheus and promtool)",
    ),
]


class Services(msgspec.Struct, kw_only=True):
    by_default_port: dict[int, ServiceProcess]
    """Each process under the port deploy/prometheus/prometheus.yml scrapes it on."""


@pytest.fixture(scope="module")
def services(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    tmp = Path(tmp_path_factory.mktemp("observability"))
    run = uuid.uuid4().hex[:8]
    topics = Topics.for_run(run)
    documents, events, events_dlq = f"docs-{run}", f"wf-events-{run}", f"wf-events-dlq-{run}"
    versioning_dlq = f"versioning-dlq-{run}"
    asyncio.run(
        ensure_topics(
            kafka_bootstrap,
            {topics.usage: 1, topics.workflow_results: 1, topics.llm_results: 1}
            | {topics.documents_dlq: 1, topics.dlq: 1, documents: 1, events: 1}
            | {events_dlq: 1, versioning_dlq: 1},
        )
    )
    started: dict[int, ServiceProcess] = {}

    def start(default_port: int, app: str, env: dict[str, str]) -> ServiceProcess:
        name = app.split(":", maxsplit=1)[0].rsplit(".", 1)[-1]
        port = free_port()
        process = ServiceProcess(app, port, env, tmp / f"{name}.log")
        started[default_port] = process
        return process.start(ready_timeout_s=60)

    try:
        registry = start(
            6121,
            "services.registry.registry_service:app",
            {"REGISTRY_DATABASE_URL": f"sqlite:///{tmp}/registry.db"},
        )
        llm = start(
            8050,
            "services.llm.llama31_8b_service:app",
            {
                "REGISTRY_URL": registry.url,
                "LLAMA31_8B_CONTEXT_LENGTH": "1024",
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "LLAMA31_8B_USAGE_TOPIC": topics.usage,
            },
        )
        start(
            6103,
            "services.provider_router.provider_router:app",
            {
                "REGISTRY_URL": registry.url,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "ROUTER_USAGE_TOPIC": topics.usage,
                "ROUTER_DATABASE_URL": f"sqlite:///{tmp}/router.db",
            },
        )
        start(
            6160,
            "services.kafka_llm_processor.app:app",
            {
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "INPUT_TOPIC": documents,
                "OUTPUT_TOPIC": topics.llm_results,
                "DLQ_TOPIC": topics.documents_dlq,
                "LLM_URL": f"{llm.url}/v1",
                "PROCESSOR_GROUP_ID": f"processor-{run}",
                "PROCESSOR_SPILL_DIR": str(tmp / "spill"),
            },
        )
        start(
            6150,
            COLLECTOR_APP,
            collector_environment(kafka_bootstrap, topics, tmp / "analytics.duckdb"),
        )
        versioning = start(
            6140,
            "services.versioning.app:app",
            {
                "VERSIONING_REPO_PATH": str(tmp / "versions" / "repo"),
                "VERSIONING_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "VERSIONING_RESULTS_TOPIC": topics.workflow_results,
                "VERSIONING_DLQ_TOPIC": versioning_dlq,
                "VERSIONING_GROUP_ID": f"versioning-{run}",
            },
        )
        start(
            6130,
            "services.langgraph_runner.app:app",
            {
                "RUNNER_CHECKPOINT_PATH": str(tmp / "checkpoints.db"),
                "RUNNER_STORE_PATH": str(tmp / "runs.db"),
                "RUNNER_LLM_URL": llm.url,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "RUNNER_EVENTS_TOPIC": events,
                "RUNNER_RESULTS_TOPIC": topics.workflow_results,
                "RUNNER_DLQ_TOPIC": events_dlq,
                "RUNNER_GROUP_ID": f"runner-{run}",
                "VERSIONING_URL": versioning.url,
            },
        )
        yield Services(by_default_port=started)
    finally:
        for process in reversed(started.values()):
            process.stop()


def _rules_evaluated(prometheus: Prometheus) -> list[dict[str, Any]]:
    """Every loaded rule once each has been evaluated at least once; [] before."""
    body = httpx.get(f"{prometheus.api}/rules", timeout=10).json()
    rules: list[dict[str, Any]] = [
        rule for group in body["data"]["groups"] for rule in group["rules"]
    ]
    never = [r for r in rules if r["lastEvaluation"].startswith("0001-")]
    return [] if never or not rules else rules


def test_every_dashboard_and_rule_query_runs_and_names_exposed_metrics(
    services: Services, tmp_path: Path
) -> None:
    processes = services.by_default_port
    exposed = set(SCRAPE_SERIES)
    for process in processes.values():
        exposed |= exposed_metric_names(httpx.get(f"{process.url}/metrics", timeout=10).text)
    queries = dashboard_queries() + rule_queries()
    config = prometheus_config(
        {port: process.port for port, process in processes.items()}, rule_files=[ALERT_RULES]
    )

    refused, unknown = [], []
    with Prometheus(config, tmp_path) as prometheus:
        up = poll(
            lambda: len(prometheus.series("up == 1")) == len(processes),
            timeout_s=60,
            interval_s=0.2,
        )
        assert up, prometheus.series("up")
        for where, expr in queries:
            try:
                prometheus.query(expr)
                names = metric_names(prometheus.format(expr))
            except PromQLError as exc:
                refused.append(f"{where}: {exc}")
                continue
            if not names:
                unknown.append(f"{where}: names no metric")
            unknown += [f"{where}: {name}" for name in sorted(names - exposed)]
        evaluated = poll(lambda: _rules_evaluated(prometheus), timeout_s=60, interval_s=0.2)

    assert len(queries) >= 70
    assert refused == []
    assert unknown == []
    assert len(evaluated) == len(alert_rules())
    assert [(r["name"], r["lastError"]) for r in evaluated if r["health"] != "ok"] == []
