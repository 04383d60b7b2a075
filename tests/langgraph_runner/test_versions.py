"""With ``VERSIONING_URL`` set, runs take their definition from a real version manager: the
champion, or the version an experiment assigns to the run's unit, recorded in the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ServiceProcess
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
