"""The runner client on a real runner process (the deterministic probe workflow of the runner's
tests): a run started and read back, a refusal with the runner's reason, an unreachable runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from libs.common.clients.runner import RunnerClient, RunnerRefused, RunnerUnavailable
from libs.common.schemas.workflows import RunRequest
from tests.langgraph_runner.conftest import runner_process_factory  # noqa: F401
from tests.support.processes import ServiceProcess, free_port


async def test_a_waited_run_is_read_back_and_a_refusal_says_why(
    runner_process_factory: Callable[..., ServiceProcess],  # noqa: F811
    tmp_path: Path,
) -> None:
    runner = runner_process_factory()
    probe = RunRequest(input={"log": str(tmp_path / "probe.log"), "value": 7}, run_id="client-1")

    async with RunnerClient(runner.url) as client:
        settled = await client.start_run("probe", probe, wait_s=60)
        read = await client.get_run("client-1")
        with pytest.raises(RunnerRefused) as unknown:
            await client.start_run("no_such_workflow", RunRequest())
        with pytest.raises(RunnerRefused) as taken:
            await client.start_run("probe", probe)

    assert settled.status == "success"
    assert settled.output == {"visited": ["a", "b", "c"], "value": 7}
    assert read.run_id == settled.run_id
    assert read.status == "success"
    assert unknown.value.status_code == 404
    assert "no_such_workflow" in unknown.value.detail
    assert taken.value.status_code == 409
    assert "client-1" in taken.value.detail


async def test_an_unreachable_runner_is_unavailable() -> None:
    async with RunnerClient(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client:
        with pytest.raises(RunnerUnavailable, match="ConnectError"):
            await client.get_run("anything")
