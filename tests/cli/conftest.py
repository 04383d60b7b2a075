"""The ``pas`` command as an operator runs it: a real process (``python -m libs.cli``) on the
real broker and real services."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.kafka_llm_processor.conftest import start_processor, topics  # noqa: F401
from tests.support.analytics_collector import start_collector
from tests.support.processes import REPO_ROOT, ServiceProcess, ServiceProcesses, free_port


def pas(
    *args: str, env: Mapping[str, str], timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``pas ARGS`` with only ``env`` as PAS's configuration (no .env), wide enough that
    rich's tables keep each row on one line."""
    return subprocess.run(
        [sys.executable, "-m", "libs.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PAS_ENV_FILE": "", "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def nowhere() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def start_analytics(
    service_processes: ServiceProcesses, tmp_path: Path
) -> Callable[[], ServiceProcess]:
    """The analytics service on a DuckDB file of the test's own, not consuming Kafka."""

    def start() -> ServiceProcess:
        return start_collector(service_processes, tmp_path)

    return start
