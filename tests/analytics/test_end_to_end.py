"""PAS as it runs: registry, an LLM service on the real embedded model, the router, the Kafka
processor and the collector, each a real process on a real broker.

A call routed to the model yields exactly one usage event in the store (the router reports it,
the LLM service does not count it again), with the desk whose key sent it; a direct call to the
LLM service yields its own. The
Grafana dashboards' PromQL runs against a real Prometheus scraping these processes, and the
collector's dashboard renders in a real headless Chromium.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.kafka.topics import ensure_topics
from tests.analytics.conftest import (
    COLLECTOR_APP,
    Topics,
    collector_environment,
    known_events,
    produce,
    run_event,
    utc_now,
)
from tests.support.browser import ARTIFACTS, HeadlessChromium, chromium_binary
from tests.support.polling import poll
from tests.support.processes import ServiceProcess, ServiceProcesses, free_port
from tests.support.prometheus import (
    PROMETHEUS_CONFIG,
    Prometheus,
    dashboard_queries,
    prometheus_config,
    prometheus_installed,
)

WORKFLOW = "document_analysis"
DESK = "rates-desk"
DESK_TOKEN = f"pas-{uuid.uuid4().hex}"


class Stack(msgspec.Struct, kw_only=True):
    registry: ServiceProcess
    llm: ServiceProcess
    router: ServiceProcess
    processor: ServiceProcess
    collector: ServiceProcess
    topics: Topics
    bootstrap: str


class Traffic(msgspec.Struct, kw_only=True):
    routed: dict[str, Any]
    direct: dict[str, Any]
    model: str


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = Path(tmp_path_factory.mktemp("analytics-e2e"))
    run = uuid.uuid4().hex[:8]
    topics = Topics.for_run(run)
    documents = f"docs-{run}"
    asyncio.run(
        ensure_topics(
            kafka_bootstrap,
            {topics.usage: 3, topics.workflow_results: 1, topics.llm_results: 1}
            | {topics.documents_dlq: 1, topics.dlq: 1, documents: 1},
        )
    )
    keys = tmp / "keys.toml"  # what `pas key new rates-desk` makes of the token
    keys.write_text(
        f'[[keys]]\nname = "{DESK}"\nsha256 = "{hashlib.sha256(DESK_TOKEN.encode()).hexdigest()}"\n'
    )
    processes = ServiceProcesses(tmp)
    try:
        registry = processes.start(
            "services.registry.registry_service:app",
            {"REGISTRY_DATABASE_URL": f"sqlite:///{tmp}/registry.db"},
            name="registry",
        )
        llm_port = free_port()
        llm = processes.start(
            "services.llm.llama31_8b_service:app",
            {
                "REGISTRY_URL": registry.url,
                "LLAMA31_8B_PORT": str(llm_port),
                "LLAMA31_8B_CONTEXT_LENGTH": "1024",
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "LLAMA31_8B_USAGE_TOPIC": topics.usage,
            },
            name="llm",
            port=llm_port,
        )
        router = processes.start(
            "services.provider_router.provider_router:app",
            {
                "REGISTRY_URL": registry.url,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "ROUTER_USAGE_TOPIC": topics.usage,
                "ROUTER_DATABASE_URL": f"sqlite:///{tmp}/router.db",
                "ROUTER_KEYS_FILE": str(keys),
            },
            name="router",
        )
        processor = processes.start(
            "services.kafka_llm_processor.app:app",
            {
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "INPUT_TOPIC": documents,
                "OUTPUT_TOPIC": topics.llm_results,
                "DLQ_TOPIC": topics.documents_dlq,
                "LLM_URL": f"{llm.url}/v1",
                "PROCESSOR_GROUP_ID": f"processor-{run}",
            },
            name="processor",
        )
        collector = processes.start(
            COLLECTOR_APP,
            collector_environment(kafka_bootstrap, topics, tmp / "analytics.duckdb"),
            name="collector",
        )
        yield Stack(
            registry=registry,
            llm=llm,
            router=router,
            processor=processor,
            collector=collector,
            topics=topics,
            bootstrap=kafka_bootstrap,
        )
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Traffic:
    """One call routed to the model, one straight to the LLM service, a day of workflow runs
    and usage over HTTP, and one undecodable usage record."""
    model = httpx.get(f"{stack.llm.url}/v1/models").json()["data"][0]["id"]
    candidate = "local/llm_llama31_8b"
    poll(
        lambda: (
            candidate
            in {c["id"] for c in httpx.get(f"{stack.router.url}/providers").json()["candidates"]}
        ),
        timeout_s=60,
        interval_s=0.2,
    )
    chat = {
        "messages": [{"role": "user", "content": "Is a bond a loan?"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    routed = httpx.post(
        f"{stack.router.url}/v1/chat/completions",
        json={**chat, "capability": "reasoning"},
        headers={
            "X-Request-ID": "e2e-routed",
            "X-PAS-Workflow-Id": WORKFLOW,
            "X-PAS-Workflow-Run-Id": "run-e2e-1",
            "Authorization": f"Bearer {DESK_TOKEN}",
        },
        timeout=120,
    )
    direct = httpx.post(
        f"{stack.llm.url}/v1/chat/completions",
        json=chat,
        headers={"X-Request-ID": "e2e-direct"},
        timeout=120,
    )
    assert routed.status_code == 200, routed.text
    assert direct.status_code == 200, direct.text
    now = utc_now()
    usage, runs = known_events(now, count=80, runs=40, spread_h=20)
    runs.append(run_event(now - timedelta(minutes=1), workflow_id=WORKFLOW, duration_ms=4200.0))
    httpx.post(
        f"{stack.collector.url}/events", json={"usage": usage, "runs": runs}
    ).raise_for_status()
    asyncio.run(produce(stack.bootstrap, stack.topics.usage, [b"{not a usage event"]))
    return Traffic(routed=routed.json(), direct=direct.json(), model=model)


def _stored(stack: Stack) -> list[dict[str, Any]]:
    """Usage rows the collector stored from the services (not the ones posted over HTTP)."""
    text = httpx.get(f"{stack.collector.url}/reports/export", params={"format": "json"}).text
    rows = [json.loads(line) for line in text.splitlines()]
    return [r for r in rows if r["request_id"] in ("e2e-routed", "e2e-direct")]


def test_a_routed_call_on_the_model_is_stored_once_with_its_usage(
    stack: Stack, traffic: Traffic
) -> None:
    rows = poll(
        lambda: _stored(stack), until=lambda found: len(found) >= 2, timeout_s=60, interval_s=0.2
    )
    metrics = {
        name: httpx.get(f"{process.url}/metrics").text
        for name, process in (("llm", stack.llm), ("router", stack.router))
    }

    by_request = {r["request_id"]: r for r in rows}
    assert sorted(by_request) == ["e2e-direct", "e2e-routed"]
    routed, direct = by_request["e2e-routed"], by_request["e2e-direct"]
    assert routed["service"] == "provider_router"
    assert (routed["provider"], routed["model"], routed["capability"]) == (
        "local",
        traffic.model,
        "reasoning",
    )
    assert (routed["workflow_id"], routed["run_id"], routed["status"]) == (
        WORKFLOW,
        "run-e2e-1",
        "ok",
    )
    assert routed["prompt_tokens"] == traffic.routed["usage"]["prompt_tokens"] > 0
    assert routed["completion_tokens"] == traffic.routed["usage"]["completion_tokens"] > 0
    assert routed["latency_ms"] > 0
    assert routed["cost_usd"] == 0
    assert (routed["desk"], direct["desk"]) == (DESK, None)
    answered = traffic.routed["usage"].get("prompt_tokens_details") or {}
    assert routed["cached_tokens"] == answered.get("cached_tokens", 0)
    assert direct["service"] == "llama31_8b"
    assert (direct["provider"], direct["model"]) == ("embedded", traffic.model)
    assert direct["prompt_tokens"] == traffic.direct["usage"]["prompt_tokens"]
    assert direct["completion_tokens"] == traffic.direct["usage"]["completion_tokens"]
    # Each service published exactly one event: the routed call was not counted twice.
    assert 'pas_usage_events_published_total{service="llama31_8b"} 1.0' in metrics["llm"]
    assert 'pas_usage_events_published_total{service="provider_router"} 1.0' in metrics["router"]
    spend = httpx.get(
        f"{stack.collector.url}/analytics/costs", params={"group_by": "workflow"}
    ).json()
    mine = next(g for g in spend["groups"] if g["key"] == WORKFLOW)
    assert mine["llm_calls"] >= 1
    desks = httpx.get(f"{stack.collector.url}/analytics/costs", params={"group_by": "desk"})
    by_desk = {g["key"]: g for g in desks.json()["groups"]}
    assert by_desk[DESK]["llm_calls"] == 1
    assert by_desk[DESK]["prompt_tokens"] == routed["prompt_tokens"]


def _prometheus_config(stack: Stack) -> str:
    """The deploy config with each target moved to where this test runs it."""
    return prometheus_config(
        {
            6121: stack.registry.port,
            6103: stack.router.port,
            8050: stack.llm.port,
            6160: stack.processor.port,
            6150: stack.collector.port,
        }
    )


@pytest.mark.skipif(
    not prometheus_installed(),
    reason="needs Debian's prometheus package (prometheus and promtool)",
)
def test_every_grafana_promql_query_returns_series_from_a_real_prometheus(
    stack: Stack, traffic: Traffic, tmp_path: Path
) -> None:
    """The analytics and services dashboards, whose every query has data once this test's
    traffic is through (the other dashboards' queries are run by tests/observability)."""
    checked = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    queries = dashboard_queries(["pas-analytics.json", "pas-services.json"])
    with Prometheus(_prometheus_config(stack), tmp_path) as prometheus:
        # rate() needs two scrapes; wait until the slowest kind of query has data.
        poll(
            lambda: prometheus.series("rate(workflow_executions_total[5m])"),
            timeout_s=60,
            interval_s=0.2,
        )
        empty = [
            (name, expr)
            for name, expr in queries
            if not poll(partial(prometheus.series, expr), timeout_s=20, interval_s=0.2)
        ]

    assert len(queries) >= 20
    assert empty == []


@pytest.mark.skipif(chromium_binary() is None, reason="needs Debian's chromium package")
async def test_the_dashboard_renders_its_charts_in_headless_chromium(
    stack: Stack, traffic: Traffic
) -> None:
    binary = chromium_binary()
    assert binary is not None
    browser = HeadlessChromium(binary).start()
    try:
        async with browser.open_page() as page:
            await page.navigate(f"{stack.collector.url}/dashboard")
            ready = await page.wait_for("document.body.dataset.ready === 'true'")
            charts = await page.evaluate(
                """Object.fromEntries([...document.querySelectorAll('canvas')].map((c) => {
                    const chart = Chart.getChart(c);
                    const values = chart ? chart.data.datasets.flatMap((d) => d.data) : [];
                    return [c.id, values.filter((v) => v !== null && v > 0).length];
                }))"""
            )
            tiles = await page.evaluate(
                "[...document.querySelectorAll('.tile .value')].map((v) => v.textContent)"
            )
            models = await page.evaluate("document.querySelectorAll('#models tbody tr').length")
            shot = await page.screenshot(ARTIFACTS / "analytics-dashboard.png")
            problems = page.problems
    finally:
        browser.stop()

    assert ready is True
    assert set(charts) == {
        "chart-runs",
        "chart-cost-model",
        "chart-cost-workflow",
        "chart-cost-desk",
        "chart-cost-provider",
        "chart-duration",
        "chart-latency",
    }
    assert all(count > 0 for count in charts.values()), charts
    assert "\u2013" not in tiles, tiles  # the placeholder a tile shows without data
    assert models >= 2
    assert problems == []
    assert shot.stat().st_size > 10_000
