"""``GET /runs/{id}/stream``: server-sent events of a run's node updates, read by a real SSE
client from a runner process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
from httpx_sse import aconnect_sse

from tests.langgraph_runner.conftest import wait_until
from tests.langgraph_runner.probes import count
from tests.support.processes import ServiceProcess


async def test_the_stream_carries_each_node_update_then_the_outcome(
    runner_process_factory: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    runner = runner_process_factory()
    log, gate = tmp_path / "probe.log", tmp_path / "gate"
    events: list[tuple[str, dict[str, Any]]] = []
    async with httpx.AsyncClient(base_url=runner.url, timeout=30) as http:
        run_id = (
            await http.post(
                "/workflows/probe/runs",
                json={"input": {"log": str(log), "gate": str(gate), "value": "v"}},
            )
        ).json()["run_id"]
        await wait_until(lambda: count(log, "b", "start") == 1)

        document = (await http.get("/schema/openapi.json")).json()
        documented = document["paths"]["/runs/{run_id}/stream"]["get"]["responses"]["200"]
        async with aconnect_sse(http, "GET", f"/runs/{run_id}/stream") as source:
            media_type = source.response.headers["content-type"].split(";")[0]
            assert media_type == "text/event-stream"
            assert list(documented["content"]) == [media_type]  # as the runner documents it
            async for message in source.aiter_sse():
                events.append((message.event, msgspec.json.decode(message.data)))
                if len(events) == 1:
                    gate.touch()  # let the run go on while we listen

        finished = (await http.get(f"/runs/{run_id}/stream")).text

    kinds = [(kind, body.get("node") or body.get("status")) for kind, body in events]
    assert kinds == [
        ("status", "running"),
        ("update", "b"),
        ("update", "c"),
        ("status", "success"),
    ]
    assert events[0][1]["step"] == 1  # a was done before we connected
    assert events[1][1]["update"] == {"visited": ["a", "b"]}
    assert events[2][1]["step"] == 3
    assert events[3][1]["update"]["output"] == {"visited": ["a", "b", "c"], "value": "v"}
    # A settled run's stream is its final status, at once.
    assert finished.count("event: status") == 1
    assert '"status":"success"' in finished
