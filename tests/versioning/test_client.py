"""The typed client the LangGraph runner uses, against a running version manager."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
import msgspec
import pytest
from litestar import Litestar

from libs.common.clients.versioning import (
    VersioningClient,
    VersioningError,
    VersioningNotFound,
    VersioningUnavailable,
)
from services.versioning.app import create_app
from services.versioning.settings import VersioningSettings
from tests.support.processes import free_port
from tests.versioning.conftest import WORKFLOW, Client, create_version, definition_json

TOKEN = "client-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Assignment hashes each unit with the experiment's random salt: at a third and two thirds, 8
# units all fell to one variant in about 4 % of runs; 40 do once in ten million.
UNITS = [f"doc-{n}" for n in range(40)]


def asgi(app: Litestar) -> httpx.ASGITransport:
    """Requests straight into the running app, no socket."""
    return httpx.ASGITransport(app=cast(Any, app))


@pytest.fixture
async def service(
    versioning_settings: VersioningSettings, open_app: Callable[[Litestar], Any]
) -> tuple[Litestar, Client]:
    app = create_app(msgspec.structs.replace(versioning_settings, token=TOKEN))
    client: Client = await open_app(app)
    return app, client


@pytest.fixture
async def client(service: tuple[Litestar, Client]) -> AsyncIterator[VersioningClient]:
    app, _ = service
    async with VersioningClient(
        "http://versioning", token=TOKEN, transport=asgi(app)
    ) as versioning:
        yield versioning


async def test_a_run_without_an_experiment_gets_the_champion(
    service: tuple[Litestar, Client], client: VersioningClient
) -> None:
    _, http = service
    await create_version(http, definition_json(model="llama3.1:8b"), headers=AUTH)
    await create_version(http, definition_json(model="llama3.1:70b"), headers=AUTH)

    plan = await client.plan_run(WORKFLOW, unit="doc-1")
    latest = await client.get_definition(WORKFLOW, "latest")

    assert (plan.version, plan.definition.model, plan.assignment) == (1, "llama3.1:8b", None)
    assert plan.event_metadata() == {"workflow_version": 1}
    assert latest.version == 2
    assert [v.version for v in (await client.history(WORKFLOW)).versions] == [2, 1]


async def test_a_run_in_an_experiment_gets_its_variant_and_reports_its_outcome(
    service: tuple[Litestar, Client], client: VersioningClient
) -> None:
    _, http = service
    await create_version(http, definition_json(model="llama3.1:8b"), headers=AUTH)
    await create_version(http, definition_json(model="llama3.1:70b"), headers=AUTH)
    experiment = (
        await http.post(
            "/experiments",
            json={"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 2}},
            headers=AUTH,
        )
    ).json()

    plans = {unit: await client.plan_run(WORKFLOW, unit=unit) for unit in UNITS}

    assert {p.assignment.variant for p in plans.values() if p.assignment} == {"A", "B"}
    for unit, plan in plans.items():
        assert plan.assignment is not None
        assert plan.assignment.experiment_id == experiment["id"]
        assert plan.version == {"A": 1, "B": 2}[plan.assignment.variant]
        assert plan.definition.model == {1: "llama3.1:8b", 2: "llama3.1:70b"}[plan.version]
        assert plan.event_metadata() == {
            "workflow_version": plan.version,
            "experiment_id": experiment["id"],
            "variant": plan.assignment.variant,
            "unit": unit,
        }
        assert (await client.assign(experiment["id"], unit)) == plan.assignment

    receipt = await client.record_outcome(
        experiment["id"], unit="doc-1", success=True, latency_ms=850.0, outcome_id="run-1"
    )
    again = await client.record_outcome(
        experiment["id"], unit="doc-1", success=True, latency_ms=850.0, outcome_id="run-1"
    )
    assert (receipt.recorded, again.recorded, again.duplicates) == (1, 0, 1)

    await http.post(f"/experiments/{experiment['id']}/stop", headers=AUTH)
    after = await client.plan_run(WORKFLOW, unit="doc-1")
    assert (after.assignment, after.version) == (None, 1), "stopped: back to the champion"


async def test_refusals_and_outages_are_told_apart(
    service: tuple[Litestar, Client], client: VersioningClient
) -> None:
    _, http = service
    await create_version(http, headers=AUTH)

    with pytest.raises(VersioningNotFound, match="no version 5"):
        await client.get_version(WORKFLOW, 5)
    with pytest.raises(VersioningNotFound, match="staging"):
        await client.get_definition(WORKFLOW, "staging")
    app, _ = service
    async with VersioningClient(
        "http://versioning", token="wrong", transport=asgi(app)
    ) as intruder:
        experiment = (
            await http.post(
                "/experiments",
                json={"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 1}},
                headers=AUTH,
            )
        ).json()
        with pytest.raises(VersioningError) as refused:
            await intruder.record_outcome(experiment["id"], unit="u", success=True, latency_ms=1.0)
        assert refused.value.status_code == 401
    async with VersioningClient(
        f"http://127.0.0.1:{free_port()}", attempts=2, timeout_s=1.0
    ) as nobody:
        with pytest.raises(VersioningUnavailable, match="ConnectError"):
            await nobody.get_definition(WORKFLOW)
