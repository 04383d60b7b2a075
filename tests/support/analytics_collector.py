"""The analytics collector as a process of its own for tests that send it events over HTTP:
its store a DuckDB file in the test's folder, Kafka not read."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import ServiceProcess, ServiceProcesses

COLLECTOR_APP = "services.analytics.app:app"


def start_collector(processes: ServiceProcesses, folder: Path) -> ServiceProcess:
    """Started and ready, on ``folder``/analytics.duckdb, not consuming Kafka."""
    environment = {
        "ANALYTICS_CONSUME": "false",
        "ANALYTICS_DB_PATH": str(folder / "analytics.duckdb"),
    }
    return processes.start(COLLECTOR_APP, environment, name="analytics")
