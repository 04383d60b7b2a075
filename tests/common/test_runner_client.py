"""The runner client on a real runner process (the deterministic probe workflow of the runner's
tests): a run started and read back, a refusal with the runner's reason, an unreachable runner;
and in front of a server that answers a fixed reply (served over HTTP by the OpenAI responder):
a run as an older runner serves it, and what a runner would not serve, which every PAS service
client takes as the service failing (``ServiceClient``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from libs.common.clients.runner import RunnerClient, RunnerRefused, RunnerUnavailable
from libs.common.schemas.workflows import RunRequest
from tests.langgraph_runner.conftest import runner_process_factory  # noqa: F401
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
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


NESTED_TOO_DEEP = b'{"output": {"plan": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
"""Deeper than msgspec or json read: RecursionError, which escaped the client."""


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"<html>Bad gateway</html>", "JSON is malformed"), (NESTED_TOO_DEEP, "nested too deep")],
    ids=["not-json", "nested-too-deep"],
)
async def test_a_success_that_cannot_be_read_is_the_runner_failing(body: bytes, why: str) -> None:
    """A proxy's page or a broken runner in front of the client: the client's error, not a
    DecodeError (nor a RecursionError) from the depths of msgspec."""
    with serve_asgi(OpenAIResponder(reply=(200, body))) as url:
        async with RunnerClient(url) as client:
            with pytest.raises(RunnerUnavailable, match=why) as caught:
                await client.get_run("anything")

    assert "/runs/anything answered 200 with what is not a RunStatus" in str(caught.value)


def older_runners_run(**changed: Any) -> bytes:
    """A run as a runner from before 2026-12-07 serves it: started with an empty stop sequence,
    which it took then and keeps in its record."""
    run = {
        "run_id": "older-1",
        "workflow_id": "probe",
        "status": "success",
        "input": {"value": 7},
        "output": {"value": 7},
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:01Z",
        "parameters": {"temperature": 0.2, "stop": ["", "</answer>", ""]},
    }
    return msgspec.json.encode({**run, **changed})


async def test_a_run_an_older_runner_serves_with_an_empty_stop_is_read_without_it() -> None:
    """Such a run was unreadable to this client: ``pas trigger`` against an older runner
    said the runner was failing (``RunnerUnavailable``) on every run started with
    ``stop: [""]``."""
    with serve_asgi(OpenAIResponder(reply=(200, older_runners_run()))) as url:
        async with RunnerClient(url) as client:
            started = await client.start_run("probe", RunRequest(input={"value": 7}))
            read = await client.get_run("older-1")

    for run in (started, read):
        assert run.run_id == "older-1"
        assert run.status == "success"
        assert run.parameters.stop == ["</answer>"]
        assert run.parameters.temperature == 0.2, "the rest as served"


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        (
            {"status": "lost", "parameters": {"stop": ["</answer>"]}},
            "Invalid enum value 'lost' - at `$.status`",
        ),
        ({"status": "lost"}, "Invalid enum value 'lost' - at `$.status`"),
        ({"parameters": {"stop": ["", "x" * 65]}}, "at `$.parameters.stop[0]`"),
    ],
    ids=["invalid-without-empty-stops", "invalid-beside-empty-stops", "stop-too-long-beside-one"],
)
async def test_a_run_that_is_invalid_beside_its_empty_stops_is_still_the_runner_failing(
    changed: dict[str, Any], why: str
) -> None:
    """Only the empty stops are left out: anything else the strict type refuses is refused as
    before, with the client's error."""
    with serve_asgi(OpenAIResponder(reply=(200, older_runners_run(**changed)))) as url:
        async with RunnerClient(url) as client:
            with pytest.raises(RunnerUnavailable) as caught:
                await client.get_run("older-1")

    assert "/runs/older-1 answered 200 with what is not a RunStatus" in str(caught.value)
    assert why in str(caught.value)


async def test_a_refusal_whose_problem_cannot_be_read_says_its_body() -> None:
    with serve_asgi(OpenAIResponder(reply=(404, NESTED_TOO_DEEP))) as url:
        async with RunnerClient(url) as client:
            with pytest.raises(RunnerRefused) as caught:
                await client.get_run("anything")

    assert caught.value.status_code == 404
    assert caught.value.detail == NESTED_TOO_DEEP.decode()
