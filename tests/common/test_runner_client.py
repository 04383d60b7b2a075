"""The runner client on a real runner process (the deterministic probe workflow of the runner's
tests): a run started and read back, a refusal with the runner's reason, an unreachable runner;
and in front of a server that answers what a runner would not (a fixed reply, served over HTTP
by the OpenAI responder): what every PAS service client does with it (``ServiceClient``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


async def test_a_refusal_whose_problem_cannot_be_read_says_its_body() -> None:
    with serve_asgi(OpenAIResponder(reply=(404, NESTED_TOO_DEEP))) as url:
        async with RunnerClient(url) as client:
            with pytest.raises(RunnerRefused) as caught:
                await client.get_run("anything")

    assert caught.value.status_code == 404
    assert caught.value.detail == NESTED_TOO_DEEP.decode()
