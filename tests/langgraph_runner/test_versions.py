"""With ``VERSIONING_URL`` set, runs take their definition from a real version manager: the
champion, or the version an experiment assigns to the run's unit, recorded in the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.support.asgi_server import serve_asgi
from tests.support.processes import ServiceProcess, free_port
from tests.versioning.conftest import AUTHOR, definition_json, versioning_process_factory

__all__ = ["versioning_process_factory"]  # the fixture, imported for these tests


async def add_version(url: str, **definition: Any) -> int:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post(
            "/workflows/probe/versions",
            json={
                "definition": definition_json("probe", **definition),
                "author": AUTHOR,
                "message": "tune the probe",
            },
        )
    assert response.status_code == 201, response.text
    version: int = response.json()["version"]
    return version


async def run_probe(runner: Any, log: Path, **request: Any) -> dict[str, Any]:
    response = await runner.post(
        "/workflows/probe/runs?wait=true", json={"input": {"log": str(log)}, **request}
    )
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    assert run["status"] == "success"
    return run


async def test_a_run_uses_the_champion_and_records_its_version(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    versioning = versioning_process_factory()
    first = await add_version(
        versioning.url, model="model-one", parameters={"temperature": 0.3, "max_tokens": 4}
    )
    await add_version(versioning.url, model="model-two")
    runner = await make_runner(versioning_url=versioning.url)

    run = await run_probe(runner, tmp_path / "probe.log")

    # The first version is the champion until someone moves it.
    assert run["parameters"]["version"] == str(first)
    assert run["parameters"]["model"] == "model-one"
    assert run["parameters"]["temperature"] == 0.3
    assert run["parameters"]["max_tokens"] == 16, "clamped to the runner's smallest call"
    assert run["metadata"]["workflow_version"] == first
    # An explicit request still wins, and then no version is claimed.
    explicit = await run_probe(runner, tmp_path / "probe.log", parameters={"model": "mine"})
    assert explicit["parameters"]["model"] == "mine"
    assert explicit["parameters"]["version"] is None
    assert "workflow_version" not in explicit["metadata"]


async def test_an_experiment_assigns_each_unit_its_variant_stickily(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    versioning = versioning_process_factory()
    await add_version(versioning.url, model="model-one")
    await add_version(versioning.url, model="model-two")
    async with httpx.AsyncClient(base_url=versioning.url) as http:
        response = await http.post(
            "/experiments",
            json={
                "workflow_id": "probe",
                "variants": {"A": 1, "B": 2},
                "split": {"A": 0.5, "B": 0.5},
            },
        )
        assert response.status_code == 201, response.text
        experiment = response.json()
        expected = {}
        for unit in ("desk-1", "desk-2", "desk-3", "desk-4"):
            assigned = await http.post(
                f"/experiments/{experiment['id']}/assign", json={"unit": unit}
            )
            expected[unit] = assigned.json()
    runner = await make_runner(versioning_url=versioning.url)

    for unit, assignment in expected.items():
        for _ in range(2):
            run = await run_probe(runner, tmp_path / "probe.log", metadata={"unit": unit})
            assert run["parameters"]["version"] == str(assignment["version"])
            assert run["metadata"]["experiment_id"] == experiment["id"]
            assert run["metadata"]["variant"] == assignment["variant"]
            assert run["metadata"]["unit"] == unit


async def test_a_version_s_long_prompt_runs_and_one_no_run_takes_is_a_502_storing_nothing(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    """The version manager took prompts of 100,000 characters, the runner's runs held 8,000:
    such a run was stored unchecked, then every read of the runs table that met it was a 500
    (its own, the list's, the outbox's). Now the bounds are one, and a version holding what
    no run takes (an empty prompt) is refused before anything is stored."""
    versioning = versioning_process_factory()
    long_prompt = "Answer as the desk's analyst would. " * 300  # 10,800 characters
    await add_version(versioning.url, prompts={"system": long_prompt}, model="m" * 250)
    runner = await make_runner(versioning_url=versioning.url)

    long_run = await run_probe(runner, tmp_path / "probe.log")
    listed = await runner.get("/runs")
    await add_version(versioning.url, prompts={"system": ""})
    async with httpx.AsyncClient(base_url=versioning.url) as http:
        moved = await http.put("/workflows/probe/aliases/champion", json={"version": 2})
    refused = await runner.post(
        "/workflows/probe/runs?wait=true", json={"input": {"log": str(tmp_path / "probe.log")}}
    )
    after = await runner.get("/runs")

    assert long_run["parameters"]["prompts"]["system"] == long_prompt
    assert listed.status_code == 200, listed.text
    assert moved.status_code == 200, moved.text
    assert refused.status_code == 502, refused.text
    assert "version 2 of 'probe' cannot be run" in refused.json()["detail"]
    assert [run["run_id"] for run in after.json()["runs"]] == [long_run["run_id"]]


async def test_a_taken_run_id_is_refused_without_asking_the_version_manager(
    make_runner: Callable[..., Any], tmp_path: Path
) -> None:
    """A taken id is a 409 whatever the version manager says: it was asked first (until
    2026-12-07), a round trip for nothing and, while it was away, a 503 instead."""
    runner = await make_runner(versioning_url=f"http://127.0.0.1:{free_port()}")  # nobody there
    # Parameters of its own: this run needs no version manager.
    first = await run_probe(runner, tmp_path / "probe.log", run_id="taken", parameters={})

    again = await runner.post(
        "/workflows/probe/runs",
        json={"input": {"log": str(tmp_path / "probe.log")}, "run_id": "taken"},
    )

    assert again.status_code == 409, again.text
    assert "'taken'" in again.json()["detail"]
    assert (await runner.get("/runs/taken")).json() == first, "the stored run, untouched"


class OlderVersionManager:
    """A version manager from before 2026-12-07, as the runner asks it (pure ASGI): no
    experiment, and a champion it stored as taken, with an empty stop sequence."""

    def __init__(self, definition: dict[str, Any]) -> None:
        self.champion = {
            "workflow_id": "probe",
            "version": 1,
            "tag": "probe/v1",
            "commit": "0" * 40,
            "author": AUTHOR,
            "message": "tune the probe",
            "created_at": "2026-12-01T10:00:00Z",
            "aliases": ["champion", "latest"],
            "definition": definition,
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        answers = {"/experiments": {"experiments": []}, "/workflows/probe": self.champion}
        found = answers.get(scope["path"])
        body = {"detail": f"no {scope['path']}"} if found is None else found
        await send(
            {
                "type": "http.response.start",
                "status": 404 if found is None else 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": msgspec.json.encode(body)})


async def test_a_version_an_older_version_manager_serves_with_an_empty_stop_runs_without_it(
    make_runner: Callable[..., Any], tmp_path: Path
) -> None:
    """Such a version was unreadable to the runner's client: every run of the workflow a 503."""
    older = OlderVersionManager(
        definition_json("probe", parameters={"temperature": 0.2, "stop": ["", "</answer>"]})
    )
    with serve_asgi(older) as url:
        runner = await make_runner(versioning_url=url)
        run = await run_probe(runner, tmp_path / "probe.log")

    assert run["parameters"]["version"] == "1"
    assert run["parameters"]["stop"] == ["</answer>"]
    assert run["parameters"]["temperature"] == 0.2, "the rest as served"
