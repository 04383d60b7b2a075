"""Fixtures for driving real Airflow (``.pas/airflow-venv``) against a real PAS: the broker, the
LangGraph runner as a process with its Kafka bridge, the embedded model behind its LLM nodes, the
version manager (the runner's definitions, experiments counting outcomes from the results).

Tests that need Airflow are marked ``airflow`` and skipped when ``scripts/setup_airflow.sh`` has
not been run."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from libs.common.kafka.topics import ensure_topics
from tests.airflow.airflow_cli import DAGS_FOLDER, Airflow, airflow_installed
from tests.langgraph_runner.probes import PROBE_REFERENCE
from tests.llm.conftest import llm_process  # noqa: F401  (the embedded model, session-wide)
from tests.support.processes import ServiceProcess, free_port

RUNNER_APP = "services.langgraph_runner.app:app"
VERSIONING_APP = "services.versioning.app:app"

needs_airflow = [
    pytest.mark.airflow,
    pytest.mark.skipif(
        not airflow_installed(),
        reason="Airflow is not set up here: run `bash scripts/setup_airflow.sh`",
    ),
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "airflow: drives real Airflow from .pas/airflow-venv (scripts/setup_airflow.sh)"
    )


MAX_RESULT_BYTES = 16_384


class PASStack(msgspec.Struct, frozen=True):
    bootstrap: str
    events_topic: str
    results_topic: str
    runner_url: str
    versioning_url: str

    def env(self) -> dict[str, str]:
        """What Airflow's tasks need to reach this PAS."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "RUNNER_EVENTS_TOPIC": self.events_topic,
            "RUNNER_RESULTS_TOPIC": self.results_topic,
            "RUNNER_URL": self.runner_url,
            "VERSIONING_URL": self.versioning_url,
        }


@pytest.fixture(scope="session")
def pas_stack(
    kafka_bootstrap: str,
    llm_process: ServiceProcess,  # noqa: F811  (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PASStack]:
    """The LangGraph runner as a real process, on topics of its own, its LLM nodes on the
    embedded model, its test workflow ``probe`` (deterministic, can be made to fail); the
    version manager as a real process, which the runner takes definitions from (``probe`` has
    a champion, version 1) and which counts experiments' outcomes from the results topic."""
    run = uuid.uuid4().hex[:8]
    events, results, dlq = f"wf-events-af-{run}", f"wf-results-af-{run}", f"wf-dlq-af-{run}"
    versioning_dlq = f"versioning-dlq-af-{run}"
    asyncio.run(ensure_topics(kafka_bootstrap, {events: 3, results: 3, dlq: 1, versioning_dlq: 1}))
    data = tmp_path_factory.mktemp("airflow-runner")
    versioning = ServiceProcess(
        VERSIONING_APP,
        free_port(),
        {
            "VERSIONING_REPO_PATH": str(data / "versions" / "repo"),
            "VERSIONING_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "VERSIONING_RESULTS_TOPIC": results,
            "VERSIONING_DLQ_TOPIC": versioning_dlq,
            "VERSIONING_GROUP_ID": f"versioning-{results}",
            "LOG_LEVEL": "INFO",
        },
        data / "versioning.log",
    ).start()
    for workflow_id in ("probe", "document_analysis"):
        add_version(versioning.url, workflow_id, "the champion: built-in defaults")
    runner = ServiceProcess(
        RUNNER_APP,
        free_port(),
        {
            "RUNNER_CHECKPOINT_PATH": str(data / "checkpoints.db"),
            "RUNNER_STORE_PATH": str(data / "runs.db"),
            "RUNNER_EXTRA_WORKFLOWS": PROBE_REFERENCE,
            "RUNNER_LLM_URL": llm_process.url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "RUNNER_EVENTS_TOPIC": events,
            "RUNNER_RESULTS_TOPIC": results,
            "RUNNER_DLQ_TOPIC": dlq,
            "RUNNER_GROUP_ID": f"runner-{events}",
            "RUNNER_COMMIT_INTERVAL_S": "0.2",
            # An output larger than this leaves the result event (test_operators.py; small:
            # the DAG's conf, the probe's input, is one command-line argument, 128 KiB at most).
            "RUNNER_MAX_RESULT_BYTES": str(MAX_RESULT_BYTES),
            "VERSIONING_URL": versioning.url,
            "LOG_LEVEL": "INFO",
        },
        data / "runner.log",
    ).start()
    yield PASStack(
        bootstrap=kafka_bootstrap,
        events_topic=events,
        results_topic=results,
        runner_url=runner.url,
        versioning_url=versioning.url,
    )
    runner.stop()
    versioning.stop()


def add_version(versioning_url: str, workflow_id: str, message: str) -> int:
    """A new version of ``workflow_id`` on its built-in defaults (the first is the champion)."""
    response = httpx.post(
        f"{versioning_url}/workflows/{workflow_id}/versions",
        json={
            "definition": {"workflow_id": workflow_id},
            "author": {"name": "PAS tests", "email": "tests@pas.invalid"},
            "message": message,
        },
        timeout=60,
    )
    assert response.status_code == 201, response.text
    version: int = response.json()["version"]
    return version


@pytest.fixture
def airflow(tmp_path: Path) -> Airflow:
    """An Airflow of the test's own on PAS's DAGs folder."""
    return Airflow.create(tmp_path / "airflow")


def dags_folder_with(tmp_path: Path, files: dict[str, str]) -> Path:
    """A copy of ``dags/`` plus ``files`` (name -> source), as a DAGs folder."""
    folder = tmp_path / "dags"
    shutil.copytree(DAGS_FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name, source in files.items():
        (folder / name).write_text(source)
    return folder
