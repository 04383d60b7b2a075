"""The runner on PostgreSQL (``RUNNER_CHECKPOINT_DSN``): checkpoints and run records there, the
same behaviour as on SQLite.

Runs when PAS_TEST_POSTGRES_DSN names a database the tests may write to; skipped otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from libs.common.schemas.workflows import RunStatus, WorkflowTriggered
from services.langgraph_runner.app import create_app
from services.langgraph_runner.persistence import open_persistence
from services.langgraph_runner.run_records import utcnow
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.store import RunRecord
from tests.langgraph_runner.conftest import trigger, wait_for_run, wait_until
from tests.langgraph_runner.probes import count

DSN = os.environ.get("PAS_TEST_POSTGRES_DSN", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not DSN, reason="set PAS_TEST_POSTGRES_DSN to test the PostgreSQL store"),
]


@pytest.fixture
def postgres_settings(runner_settings: RunnerSettings) -> RunnerSettings:
    return msgspec.structs.replace(runner_settings, checkpoint_dsn=DSN, drain_timeout_s=0.2)


@pytest.mark.usefixtures("empty_database")
async def test_runs_resume_and_survive_a_restart_on_postgres(
    postgres_settings: RunnerSettings, tmp_path: Path
) -> None:
    log, gate, broken = tmp_path / "log", tmp_path / "gate", tmp_path / "broken"
    broken.touch()

    first = AsyncTestClient(app=create_app(postgres_settings))
    async with first:
        health = (await first.get("/health")).json()
        failed = (
            await first.post(
                "/workflows/probe/runs?wait=true",
                json={"input": {"log": str(log), "broken": str(broken)}},
            )
        ).json()
        blocked = (
            await first.post(
                "/workflows/probe/runs", json={"input": {"log": str(log), "gate": str(gate)}}
            )
        ).json()
        await wait_until(lambda: count(log, "b", "start", blocked["run_id"]) == 1)
    # The app is closed: the blocked run was drained and stays running in PostgreSQL.
    broken.unlink()
    gate.touch()

    second = AsyncTestClient(app=create_app(postgres_settings))
    async with second:
        resumed_after_restart = await wait_for_run(second, blocked["run_id"])
        resumed_after_failure = (
            await second.post(f"/runs/{failed['run_id']}/resume?wait=true")
        ).json()

    assert health["details"]["checkpoints"] == "postgres"
    assert failed["status"] == "error"
    assert resumed_after_restart["status"] == "success"
    assert count(log, "a", "start", blocked["run_id"]) == 1
    assert resumed_after_failure["status"] == "success"
    assert count(log, "a", "start", failed["run_id"]) == 1


@pytest.mark.usefixtures("empty_database")
async def test_an_event_id_starts_one_run_on_postgres(
    postgres_settings: RunnerSettings, tmp_path: Path
) -> None:
    event = msgspec.convert(
        trigger("probe", {"log": str(tmp_path / "log")}), WorkflowTriggered, strict=False
    )

    def record(run_id: str) -> RunRecord:
        now = utcnow()
        return RunRecord(
            run=RunStatus(
                run_id=run_id,
                workflow_id="probe",
                status="pending",
                input=event.payload,
                created_at=now,
                updated_at=now,
                event_id=event.event_id,
                workflow_run_id=event.workflow_run_id,
            ),
            owner="runner",
        )

    async with open_persistence(postgres_settings) as (_, store):
        first, created = await store.create_for_event(record("run-1"))
        again, created_again = await store.create_for_event(record("run-2"))
        stored = await store.get("run-1")

    assert created
    assert not created_again
    assert again.run.run_id == first.run.run_id == "run-1"
    assert stored is not None
    assert stored.run.event_id == event.event_id
