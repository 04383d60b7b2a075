"""A runner process that dies mid-graph (SIGKILL) or is stopped (SIGTERM) resumes the run when it
starts again, from the last checkpoint: completed nodes do not run again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.langgraph_runner.conftest import start_held_run, wait_for_run
from tests.langgraph_runner.probes import count
from tests.support.processes import ServiceProcess


async def test_a_killed_runner_resumes_the_run_after_restart(
    runner_process_factory: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    log, gate = tmp_path / "probe.log", tmp_path / "gate"
    first = runner_process_factory()
    run_id = await start_held_run(first, log, gate)

    first.kill()
    gate.touch()
    second = runner_process_factory()
    async with httpx.AsyncClient(base_url=second.url) as http:
        run = await wait_for_run(http, run_id)
        metrics = (await http.get("/metrics")).text

    assert run["status"] == "success", run["error"]
    assert run["output"]["visited"] == ["a", "b", "c"]
    assert run["attempts"] == 2
    assert 'pas_runner_runs_recovered_total{workflow="probe"} 1.0' in metrics
    assert count(log, "a", "start") == 1  # completed before the crash: not run again
    assert count(log, "b", "start") == 2  # in progress at the crash: run again
    assert count(log, "b", "end") == 1
    assert count(log, "c", "start") == 1
    # Another process (another default instance name): taken over once the lease expired.
    assert 'pas_runner_runs_taken_over_total{workflow="probe"} 1.0' in metrics
    assert "resuming run taken over" in second.logs()


async def test_a_stopped_runner_leaves_its_run_to_the_next_start(
    runner_process_factory: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    log, gate = tmp_path / "probe.log", tmp_path / "gate"
    first = runner_process_factory(RUNNER_DRAIN_TIMEOUT_S="0.5")
    run_id = await start_held_run(first, log, gate)

    first.stop()  # SIGTERM: b cannot finish within the drain timeout
    shutdown = first.logs()
    gate.touch()
    second = runner_process_factory()
    async with httpx.AsyncClient(base_url=second.url) as http:
        run = await wait_for_run(http, run_id)

    assert "draining runs" in shutdown
    assert "runner stopped" in shutdown  # a clean shutdown, not a kill
    assert run["status"] == "success", run["error"]
    assert count(log, "a", "start") == 1
    assert count(log, "c", "start") == 1


async def test_run_records_survive_a_restart(
    runner_process_factory: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    first = runner_process_factory()
    async with httpx.AsyncClient(base_url=first.url) as http:
        done = (
            await http.post(
                "/workflows/probe/runs?wait=true",
                json={"input": {"log": str(tmp_path / "log"), "value": 7}},
            )
        ).json()
    first.stop()

    second = runner_process_factory()
    async with httpx.AsyncClient(base_url=second.url) as http:
        again = (await http.get(f"/runs/{done['run_id']}")).json()

    assert done["status"] == "success"
    assert again == done
