"""A restarted version manager process keeps everything: versions, aliases, experiments,
outcomes, decisions and assignments, after a graceful stop and after a crash."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.processes import ServiceProcess
from tests.versioning.conftest import AUTHOR, WORKFLOW, definition_json

TOKEN = "s3cret-versioning-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNITS = [f"desk-{n}" for n in range(60)]


def snapshot(url: str, experiment_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=url) as http:
        return {
            "history": http.get(f"/workflows/{WORKFLOW}/versions").json(),
            "champion": http.get(f"/workflows/{WORKFLOW}").json(),
            "experiment": http.get(f"/experiments/{experiment_id}").json(),
            "assignments": [
                http.post(f"/experiments/{experiment_id}/assign", json={"unit": u}).json()
                for u in UNITS
            ],
        }


def test_everything_survives_a_stop_and_a_crash(
    versioning_process_factory: Callable[..., ServiceProcess],
) -> None:
    first = versioning_process_factory(VERSIONING_TOKEN=TOKEN, LOG_LEVEL="DEBUG")
    for model in ("llama3.1:8b", "llama3.1:70b", "qwen2.5:7b"):
        httpx.post(
            f"{first.url}/workflows/{WORKFLOW}/versions",
            json={"definition": definition_json(model=model), "author": AUTHOR, "message": model},
            headers=AUTH,
        ).raise_for_status()
    httpx.put(
        f"{first.url}/workflows/{WORKFLOW}/aliases/staging", json={"version": 3}, headers=AUTH
    ).raise_for_status()
    experiment = httpx.post(
        f"{first.url}/experiments",
        json={"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 2}, "min_samples": 10},
        headers=AUTH,
    ).json()
    outcomes = [
        {"unit": u, "success": n % 3 != 0, "latency_ms": 100.0 + n, "outcome_id": f"r{n}"}
        for n, u in enumerate(UNITS)
    ]
    httpx.post(
        f"{first.url}/experiments/{experiment['id']}/outcomes", json=outcomes[:40], headers=AUTH
    ).raise_for_status()
    before = snapshot(first.url, experiment["id"])
    assert before["experiment"]["decision"] is not None

    # uvicorn drains, runs the shutdown, then re-raises SIGTERM so its exit status tells why.
    assert first.stop() in (0, -signal.SIGTERM)
    assert "version manager stopped" in first.logs()

    second = versioning_process_factory(port=first.port, VERSIONING_TOKEN=TOKEN)
    assert snapshot(second.url, experiment["id"]) == before
    httpx.post(
        f"{second.url}/experiments/{experiment['id']}/outcomes", json=outcomes[30:], headers=AUTH
    ).raise_for_status()
    httpx.post(
        f"{second.url}/workflows/{WORKFLOW}/rollback",
        json={"version": 1, "author": AUTHOR},
        headers=AUTH,
    ).raise_for_status()
    acknowledged = snapshot(second.url, experiment["id"])
    assert acknowledged["experiment"]["results"]["total"] == 60, "r30..r39 counted once"

    second.kill()  # SIGKILL: no shutdown at all
    third = versioning_process_factory(port=first.port, VERSIONING_TOKEN=TOKEN)
    assert snapshot(third.url, experiment["id"]) == acknowledged
    assert httpx.get(f"{third.url}/workflows/{WORKFLOW}").json()["version"] == 4

    logs = first.logs() + second.logs() + third.logs()
    assert TOKEN not in logs, "the token is never logged"


def test_writes_need_the_token_and_reads_do_not(
    versioning_process_factory: Callable[..., ServiceProcess],
) -> None:
    service = versioning_process_factory(VERSIONING_TOKEN=TOKEN)
    url = f"{service.url}/workflows/{WORKFLOW}"
    body = {"definition": definition_json(), "author": AUTHOR, "message": "first"}

    refused = httpx.post(f"{url}/versions", json=body)
    wrong = httpx.post(f"{url}/versions", json=body, headers={"Authorization": "Bearer nope"})
    accepted = httpx.post(f"{url}/versions", json=body, headers=AUTH)

    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert accepted.status_code == 201
    writes = [
        ("PUT", f"{url}/aliases/staging", {"version": 1}),
        ("POST", f"{url}/rollback", {"version": 1, "author": AUTHOR}),
        (
            "POST",
            f"{service.url}/experiments",
            {"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 1}},
        ),
    ]
    for method, target, payload in writes:
        assert httpx.request(method, target, json=payload).status_code == 401, target
    assert httpx.get(f"{url}/versions").status_code == 200
    assert httpx.get(url).status_code == 200
    assert httpx.get(f"{url}/compare?v1=1&v2=1").status_code == 200

    experiment = httpx.post(
        f"{service.url}/experiments",
        json={"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 1}},
        headers=AUTH,
    ).json()
    target = f"{service.url}/experiments/{experiment['id']}"
    assert httpx.post(f"{target}/assign", json={"unit": "u1"}).status_code == 200, (
        "assigning changes nothing: open to every runner"
    )
    outcome = {"unit": "u1", "success": True, "latency_ms": 5.0}
    assert httpx.post(f"{target}/outcomes", json=outcome).status_code == 401
    assert httpx.post(f"{target}/outcomes", json=outcome, headers=AUTH).status_code == 200
    assert httpx.post(f"{target}/stop").status_code == 401
    assert httpx.post(f"{target}/stop", headers=AUTH).status_code == 200
