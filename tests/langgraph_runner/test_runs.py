"""Runs over HTTP on a deterministic workflow: start, wait, retry transient failures, fail with
the reason, resume a failure from its checkpoint, cancel, list. And a cancel racing a resume
(one runner, or two replicas on one store: SQLite, and PostgreSQL when PAS_TEST_POSTGRES_DSN is
set), through the run manager with the store's writes held at the moment the race turns on:
exactly one of them holds, and the other says why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from services.langgraph_runner.catalog import Catalog, build_deps
from services.langgraph_runner.definitions import RequestedParameters
from services.langgraph_runner.errors import RunConflict
from services.langgraph_runner.llm import LLMGateway
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.persistence import open_persistence
from services.langgraph_runner.runs import RunManager
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.store import RunRecord, RunStore
from tests.langgraph_runner.conftest import POSTGRES_DSN, RUN_STORES, wait_for_run, wait_until
from tests.langgraph_runner.probes import count


async def test_a_run_started_with_wait_answers_its_output(
    runner: AsyncTestClient[Any], tmp_path: Path
) -> None:
    log = tmp_path / "probe.log"

    response = await runner.post(
        "/workflows/probe/runs?wait=true",
        json={"input": {"log": str(log), "value": {"desk": "rates"}}, "metadata": {"by": "test"}},
    )

    assert response.status_code == 200
    run = response.json()
    assert response.headers["location"] == f"/runs/{run['run_id']}"
    assert run["status"] == "success"
    assert run["output"] == {"visited": ["a", "b", "c"], "value": {"desk": "rates"}}
    assert run["path"] == ["a", "b", "c"]
    assert run["steps"] == 3
    assert run["attempts"] == 1
    assert run["error"] is None
    assert run["source"] == "http"
    assert run["metadata"] == {"by": "test"}
    assert run["started_at"] <= run["finished_at"]
    assert (await runner.get(f"/runs/{run['run_id']}")).json() == run


async def test_without_wait_the_run_is_accepted_and_runs_in_the_background(
    runner: AsyncTestClient[Any], tmp_path: Path
) -> None:
    log, gate = tmp_path / "probe.log", tmp_path / "gate"

    accepted = await runner.post(
        "/workflows/probe/runs", json={"input": {"log": str(log), "gate": str(gate)}}
    )
    run_id = accepted.json()["run_id"]
    await wait_until(lambda: count(log, "b", "start") == 1)
    running = (await runner.get(f"/runs/{run_id}")).json()
    gate.touch()
    done = await wait_for_run(runner, run_id)

    assert accepted.status_code == 202
    assert accepted.json()["status"] in {"pending", "running"}
    assert running["status"] == "running"
    assert running["path"] == ["a"]
    assert done["status"] == "success"


async def test_transient_failures_are_retried_inside_the_run(
    runner: AsyncTestClient[Any], tmp_path: Path
) -> None:
    log = tmp_path / "probe.log"

    run = (
        await runner.post(
            "/workflows/probe/runs?wait=true",
            json={"input": {"log": str(log), "transient_failures": 2}},
        )
    ).json()

    assert run["status"] == "success"
    assert count(log, "b", "start") == 3  # two ConnectionErrors, then through
    assert count(log, "a", "start") == 1
    assert run["attempts"] == 1


async def test_after_its_retries_a_run_fails_with_the_reason(
    make_runner: Any, tmp_path: Path
) -> None:
    runner = await make_runner(node_max_attempts=2)
    log = tmp_path / "probe.log"

    run = (
        await runner.post(
            "/workflows/probe/runs?wait=true",
            json={"input": {"log": str(log), "transient_failures": 5}},
        )
    ).json()

    assert run["status"] == "error"
    assert "'b'" in run["error"]
    assert "ConnectionError" in run["error"]
    assert count(log, "b", "start") == 2
    assert run["output"] is None


async def test_a_failed_run_resumes_from_its_checkpoint(
    runner: AsyncTestClient[Any], tmp_path: Path
) -> None:
    log, broken = tmp_path / "probe.log", tmp_path / "broken"
    broken.touch()
    failed = (
        await runner.post(
            "/workflows/probe/runs?wait=true",
            json={"input": {"log": str(log), "broken": str(broken)}},
        )
    ).json()
    attempts_before_resume = count(log, "c", "start")
    broken.unlink()  # the operator fixes the cause

    resumed = await runner.post(f"/runs/{failed['run_id']}/resume?wait=true")

    assert failed["status"] == "error"
    assert "ValueError" in failed["error"]
    assert "'c'" in failed["error"]
    assert attempts_before_resume == 1  # a permanent error is not retried
    assert resumed.status_code == 200
    run = resumed.json()
    assert run["status"] == "success"
    assert run["attempts"] == 2
    assert run["path"] == ["a", "b", "c"]
    # Completed nodes did not run again; only the failed one did.
    assert count(log, "a", "start") == 1
    assert count(log, "b", "start") == 1
    assert count(log, "c", "start") == 2


async def test_cancel_a_running_run(runner: AsyncTestClient[Any], tmp_path: Path) -> None:
    log, gate = tmp_path / "probe.log", tmp_path / "gate"
    run_id = (
        await runner.post(
            "/workflows/probe/runs", json={"input": {"log": str(log), "gate": str(gate)}}
        )
    ).json()["run_id"]
    await wait_until(lambda: count(log, "b", "start") == 1)

    cancelled = await runner.post(f"/runs/{run_id}/cancel")
    again = await runner.post(f"/runs/{run_id}/cancel")
    resumed = await runner.post(f"/runs/{run_id}/resume")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert count(log, "c", "start") == 0
    assert again.status_code == 409
    assert resumed.status_code == 409


async def test_runs_are_listed_newest_first_and_filtered(
    runner: AsyncTestClient[Any], tmp_path: Path
) -> None:
    ids = []
    for value in range(3):
        body = {"input": {"log": str(tmp_path / "probe.log"), "value": value}}
        ids.append((await runner.post("/workflows/probe/runs?wait=true", json=body)).json())

    listed = (await runner.get("/runs?workflow_id=probe&status=success&limit=2")).json()
    none = (await runner.get("/runs?workflow_id=document_analysis")).json()

    assert [r["run_id"] for r in listed["runs"]] == [ids[2]["run_id"], ids[1]["run_id"]]
    assert none["runs"] == []


async def test_a_chosen_run_id_is_the_run_id(runner: AsyncTestClient[Any], tmp_path: Path) -> None:
    body = {"input": {"log": str(tmp_path / "probe.log")}, "run_id": "desk-7.close-2025"}

    first = await runner.post("/workflows/probe/runs?wait=true", json=body)
    taken = await runner.post("/workflows/probe/runs", json=body)

    assert first.json()["run_id"] == "desk-7.close-2025"
    assert taken.status_code == 409
    assert "desk-7.close-2025" in taken.json()["detail"]


# -- a cancel racing a resume ------------------------------------------------------------------


class HeldSaves:
    """A run store as the runner opens it (SQLite, or PostgreSQL), except that the one save
    :meth:`hold` names waits at a gate (before its write, or after it), until
    :meth:`open_gate`; everything else goes to the store as it is."""

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._held: tuple[str, str, bool] | None = None
        self.reached = asyncio.Event()
        self._gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def hold(self, run_id: str, status: str, *, after_write: bool = False) -> None:
        """Hold the next save that writes ``run_id`` with ``status``."""
        self._held = (run_id, status, after_write)

    def open_gate(self) -> None:
        self._gate.set()

    async def save(self, record: RunRecord, **conditions: Any) -> bool:
        save = self._store.save
        held = self._held
        if held is None or held[:2] != (record.run.run_id, record.run.status):
            return await save(record, **conditions)
        self._held = None
        taken = await save(record, **conditions) if held[2] else None
        self.reached.set()
        await self._gate.wait()
        return taken if taken is not None else await save(record, **conditions)


Replica = Callable[[str], AbstractAsyncContextManager[tuple[RunManager, HeldSaves]]]


@pytest.fixture(params=RUN_STORES)
def replica(request: pytest.FixtureRequest, runner_settings: RunnerSettings) -> Replica:
    """A run manager named ``instance`` on the test's store and checkpoints, opened as the app
    opens them (SQLite files, or a PostgreSQL database emptied first), its store's saves to
    be held; replicas opened alike share both."""
    shared = runner_settings
    if request.param == "postgres":
        request.getfixturevalue("empty_database")
        shared = msgspec.structs.replace(runner_settings, checkpoint_dsn=POSTGRES_DSN)

    @asynccontextmanager
    async def open_replica(instance: str) -> AsyncIterator[tuple[RunManager, HeldSaves]]:
        settings = msgspec.structs.replace(shared, instance=instance)
        llm = LLMGateway(settings)
        catalog = Catalog.from_settings(settings, build_deps(settings, llm))
        runs = RunManager(catalog, settings, RequestedParameters(), RunnerMetrics())
        async with open_persistence(settings) as (checkpointer, opened):
            store = HeldSaves(opened)
            catalog.bind(checkpointer)
            runs.attach(store)
            try:
                yield runs, store
            finally:
                await runs.close()
                await llm.aclose()

    return open_replica


async def interrupted_run(runs: RunManager, log: Path, **probe: str) -> str:
    """A probe run waiting for a person's answer in node ``b`` (more of its input in
    ``probe``)."""
    record = await runs.start("probe", {"log": str(log), "ask_person": "go on?", **probe})
    run = (await runs.wait(record.run.run_id, timeout_s=30)).run
    assert run.status == "interrupted", run
    return run.run_id


async def test_a_cancel_while_the_run_is_being_resumed_here_is_refused(
    replica: Replica, tmp_path: Path
) -> None:
    log = tmp_path / "probe.log"
    async with replica("runner-a") as (runs, store):
        run_id = await interrupted_run(runs, log)
        # The resume's write is stored (pending, this runner's); its task is not started yet.
        store.hold(run_id, "pending", after_write=True)
        resuming = asyncio.create_task(runs.resume(run_id, "yes"))
        await store.reached.wait()

        with pytest.raises(RunConflict, match="being resumed") as refused:
            await runs.cancel(run_id)
        store.open_gate()
        await resuming
        done = (await runs.wait(run_id, timeout_s=30)).run

    assert refused.value.status_code == 409
    assert done.status == "success"
    assert done.output == {"visited": ["a", "b", "c"], "value": None, "answer": "yes"}


async def test_a_cancel_on_another_replica_before_the_resume_is_stored_wins(
    replica: Replica, tmp_path: Path
) -> None:
    log = tmp_path / "probe.log"
    async with replica("runner-a") as (runs_a, store_a), replica("runner-b") as (runs_b, _):
        run_id = await interrupted_run(runs_a, log)
        # A has read the interrupted run and decided to resume it; its write is not stored yet.
        store_a.hold(run_id, "pending")
        resuming = asyncio.create_task(runs_a.resume(run_id, "yes"))
        await store_a.reached.wait()

        cancelled = (await runs_b.cancel(run_id)).run
        store_a.open_gate()
        with pytest.raises(RunConflict, match="cancelled") as refused:
            await resuming
        stored = (await runs_b.get(run_id)).run

    assert cancelled.status == "cancelled"
    assert refused.value.status_code == 409
    assert stored.status == "cancelled"
    assert count(log, "c", "start", run_id) == 0  # the run did not go on


async def test_a_cancel_on_another_replica_that_a_resume_overtook_is_refused(
    replica: Replica, tmp_path: Path
) -> None:
    log = tmp_path / "probe.log"
    async with replica("runner-a") as (runs_a, _), replica("runner-b") as (runs_b, store_b):
        run_id = await interrupted_run(runs_a, log)
        # B has read the interrupted run and decided to cancel it; its write is not stored yet.
        store_b.hold(run_id, "cancelled")
        cancelling = asyncio.create_task(runs_b.cancel(run_id))
        await store_b.reached.wait()

        await runs_a.resume(run_id, "yes")
        done = (await runs_a.wait(run_id, timeout_s=30)).run
        store_b.open_gate()
        with pytest.raises(RunConflict, match="not cancelled") as refused:
            await cancelling
        stored = (await runs_b.get(run_id)).run

    assert done.status == "success"
    assert refused.value.status_code == 409
    assert stored.status == "success"


async def test_a_resume_read_before_the_run_asked_again_elsewhere_is_refused(
    replica: Replica, tmp_path: Path
) -> None:
    """The run's status reads ``interrupted`` before and after: only its revision tells that
    the question A read is no longer the one the run asks."""
    log = tmp_path / "probe.log"
    async with replica("runner-a") as (runs_a, store_a), replica("runner-b") as (runs_b, _):
        run_id = await interrupted_run(runs_a, log, ask_again="sure?")
        # A has read the run asking "go on?" and decided to answer it; its write is not stored.
        store_a.hold(run_id, "pending")
        resuming = asyncio.create_task(runs_a.resume(run_id, "yes"))
        await store_a.reached.wait()

        # Meanwhile B answers that question: the run goes on and asks its second one.
        await runs_b.resume(run_id, "go")
        asked_again = (await runs_b.wait(run_id, timeout_s=30)).run
        store_a.open_gate()
        with pytest.raises(RunConflict, match="asked a new question") as refused:
            await resuming
        stored = (await runs_b.get(run_id)).run

    assert asked_again.status == "interrupted"
    assert [pending.value for pending in asked_again.interrupts] == ["sure?"]
    assert refused.value.status_code == 409
    assert stored.status == "interrupted"  # A's "yes" did not answer "sure?"
    assert stored.interrupts == asked_again.interrupts
    assert count(log, "c", "start", run_id) == 0


async def test_an_interrupted_run_cancelled_on_another_replica_is_that_replicas(
    replica: Replica, tmp_path: Path
) -> None:
    """The replica that cancels reports the end and holds its lease: the replica the run was
    interrupted on stopping later leaves no ended run of its own to take over."""
    log = tmp_path / "probe.log"
    async with replica("runner-a") as (runs_a, _), replica("runner-b") as (runs_b, store_b):
        for runs in (runs_a, runs_b):
            runs.report_outcomes(lambda _: True, lambda: None)
        run_id = await interrupted_run(runs_a, log)

        cancelled = await runs_b.cancel(run_id)
        reported_by_a = [record.run.run_id for record in await runs_a.unreported()]
        reported_by_b = [record.run.run_id for record in await runs_b.unreported()]
        # A stops: every lease it held is claimable at once.
        await runs_a.release_leases()
        taken_over = await store_b.claim("runner-b", limit=10)

    assert cancelled.run.status == "cancelled"
    assert cancelled.owner == "runner-b"
    assert reported_by_a == []
    assert reported_by_b == [run_id]
    assert taken_over == []
