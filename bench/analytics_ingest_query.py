"""The analytics collector against DuckDB used directly in one process.

Two figures, each a ratio against the same work done straight on DuckDB in this process:

1. ingest: usage events per second through ``POST /events`` on a real collector process
   (HTTP, JSON decoding and validation, the store's batch insert, metrics), next to the same
   batches inserted into a DuckDB file in-process the way the store does (Arrow table, same
   SQL);
2. queries over the stored events (default one million): latency p50/p99 of the cost query
   (grouped by model), the workflow report and an hourly trend through HTTP, next to the same
   SQL run in-process on the baseline file holding the same rows.

Run: ``.venv/bin/python -m bench.analytics_ingest_query [--rows 1000000]`` (about two minutes).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import msgspec

from bench.process_stats import cpu_seconds
from libs.common.schemas.usage import EventBatch, UsageEvent, WorkflowRun
from services.analytics import queries
from services.analytics.batches import run_columns
from services.analytics.duckdb_schema import SCHEMA
from services.analytics.duckdb_usage import insert_new_usage
from services.analytics.usage_table import usage_table
from tests.support.processes import ServiceProcess, free_port

BATCH = 5_000
QUERY_ROUNDS = 100
MODELS = [f"model-{i}" for i in range(12)]
WORKFLOWS = [f"workflow_{i}" for i in range(20)]


def make_batch(rng: random.Random, now: datetime, size: int) -> EventBatch:
    usage = []
    for _ in range(size):
        usage.append(
            UsageEvent(
                event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                timestamp=now - timedelta(seconds=rng.uniform(0, 6 * 86_400)),
                service="provider_router",
                provider=rng.choice(("local", "openai", "anthropic")),
                model=rng.choice(MODELS),
                status="error" if rng.random() < 0.05 else "ok",
                prompt_tokens=rng.randint(5, 2000),
                completion_tokens=rng.randint(0, 500),
                latency_ms=rng.uniform(20, 5000),
                cost_usd=round(rng.uniform(0, 0.01), 10),
                capability=rng.choice(("reasoning", "classification", None)),
                workflow_id=rng.choice([*WORKFLOWS, None]),
                desk=rng.choice(("rates", "fx", "equities", None)),
            )
        )
    runs = [
        WorkflowRun(
            run_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            workflow_id=rng.choice(WORKFLOWS),
            status="error" if rng.random() < 0.1 else "success",
            timestamp=now - timedelta(seconds=rng.uniform(0, 6 * 86_400)),
            duration_ms=rng.uniform(100, 60_000),
        )
        for _ in range(size // 10)
    ]
    return EventBatch(usage=usage, runs=runs)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, round(len(ordered) * 0.99) - 1)]


def timed(call: Callable[[], Any], rounds: int) -> list[float]:
    call()  # warm up
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage events to store")
    args = parser.parse_args()
    rng = random.Random(7)
    now = datetime.now(UTC)
    batches = [make_batch(rng, now, BATCH) for _ in range(max(1, args.rows // BATCH))]
    rows = sum(len(b.usage) for b in batches)
    bodies = [msgspec.json.encode(b) for b in batches]

    with tempfile.TemporaryDirectory(prefix="pas-bench-analytics-") as tmp:
        baseline = duckdb.connect(str(Path(tmp) / "baseline.duckdb"))
        baseline.execute("SET GLOBAL TimeZone = 'UTC'")
        for statement in SCHEMA:
            baseline.execute(statement)
        started = time.perf_counter()
        direct_cpu = time.process_time()
        for batch in batches:
            insert_new_usage(baseline, usage_table(batch.usage))
            runs = run_columns(batch.runs)[1]
            baseline.execute(queries.DELETE_SUPERSEDED_RUNS, runs)
            baseline.execute(queries.INSERT_RUNS, runs).fetchall()
        direct_rate = rows / (time.perf_counter() - started)
        direct_cpu = time.process_time() - direct_cpu

        collector = ServiceProcess(
            "services.analytics.app:app",
            free_port(),
            {
                "ANALYTICS_DB_PATH": str(Path(tmp) / "collector.duckdb"),
                "ANALYTICS_CONSUME": "false",
                "ANALYTICS_RAW_RETENTION_S": "0",
                "ANALYTICS_MAX_BODY_BYTES": str(64 * 1024 * 1024),
                "LOG_LEVEL": "WARNING",
            },
            Path(tmp) / "collector.log",
        ).start()
        try:
            with httpx.Client(base_url=collector.url, timeout=120) as http:
                started = time.perf_counter()
                client_cpu = time.process_time()
                collector_cpu = cpu_seconds(collector.pid)
                for body in bodies:
                    response = http.post(
                        "/events", content=body, headers={"content-type": "application/json"}
                    )
                    response.raise_for_status()
                http_rate = rows / (time.perf_counter() - started)
                collector_cpu = cpu_seconds(collector.pid) - collector_cpu
                client_cpu = time.process_time() - client_cpu

                window = {
                    "from": (now - timedelta(days=7)).isoformat(),
                    "to": (now + timedelta(minutes=1)).isoformat(),
                }
                params = [now - timedelta(days=7), now + timedelta(minutes=1)]
                trend_sql, _ = queries.trend(
                    "cost", "1h", queries.DUCKDB, workflow_id=None, model=None
                )
                cases = {
                    "costs by model": (
                        lambda: http.get(
                            "/analytics/costs", params={**window, "group_by": "model"}
                        ).raise_for_status(),
                        queries.costs("model"),
                    ),
                    "workflow report": (
                        lambda: http.get("/analytics/workflows", params=window).raise_for_status(),
                        queries.workflow_stats(queries.DUCKDB),
                    ),
                    "hourly cost trend": (
                        lambda: http.get(
                            "/analytics/trends", params={**window, "metric": "cost"}
                        ).raise_for_status(),
                        trend_sql,
                    ),
                }
                results = []
                for name, (over_http, sql) in cases.items():

                    def in_process(sql: str = sql) -> None:
                        baseline.execute(sql, params).fetchall()

                    served = percentiles(timed(over_http, QUERY_ROUNDS))
                    direct = percentiles(timed(in_process, QUERY_ROUNDS))
                    results.append((name, served, direct))
        finally:
            collector.stop()
        baseline.close()

    print(f"analytics collector, {rows:,} usage events (+{rows // 10:,} runs), batches of {BATCH}")
    print(
        f"ingest  POST /events: {http_rate:,.0f} events/s   DuckDB in-process: "
        f"{direct_rate:,.0f} events/s   ratio {http_rate / direct_rate:.2f}"
    )
    print(
        f"ingest CPU a 1,000 events: collector {collector_cpu / rows * 1e6:,.0f} ms, "
        f"this client {client_cpu / rows * 1e6:,.0f} ms; DuckDB in-process "
        f"{direct_cpu / rows * 1e6:,.0f} ms"
    )
    for name, (s50, s99), (d50, d99) in results:
        print(
            f"{name:<18} HTTP p50 {s50:7.2f} ms p99 {s99:7.2f} ms   DuckDB p50 {d50:7.2f} ms "
            f"p99 {d99:7.2f} ms   p99 ratio {s99 / d99:.2f}"
        )


if __name__ == "__main__":
    main()
