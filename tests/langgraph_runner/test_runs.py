"""Runs over HTTP on a deterministic workflow: start, wait, retry transient failures, fail with
the reason, resume a failure from its checkpoint, cancel, list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from tests.langgraph_runner.conftest import wait_for_run, wait_until
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
