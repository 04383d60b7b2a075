"""Bad input gets a 4xx problem body that names what was wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.versioning.conftest import (
    AUTHOR,
    WORKFLOW,
    Client,
    create_version,
    definition_json,
    problem,
    write_as_an_older_release,
)


def version_body(definition: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "definition": definition or definition_json(),
        "author": AUTHOR,
        "message": "A change",
        **extra,
    }


async def test_every_unknown_key_of_a_definition_is_named(versioning: Client) -> None:
    definition = definition_json(promts={"system": "typo"}, temprature=0.1)

    body = problem(
        await versioning.post(f"/workflows/{WORKFLOW}/versions", json=version_body(definition)),
        400,
    )

    assert [e["field"] for e in body["errors"]] == ["definition.promts", "definition.temprature"]
    assert "definition.promts" in body["detail"]
    assert "definition.temprature" in body["detail"]
    assert "prompts" in body["errors"][0]["message"], "the allowed keys are listed"
    assert (await versioning.get("/workflows")).json()["workflows"] == []


async def test_unknown_keys_are_named_at_any_depth(versioning: Client) -> None:
    definition = definition_json(parameters={"temperature": 0.1, "top_k": 40})
    body = problem(
        await versioning.post(
            f"/workflows/{WORKFLOW}/versions", json=version_body(definition, mesage="typo")
        ),
        400,
    )
    assert sorted(e["field"] for e in body["errors"]) == ["definition.parameters.top_k", "mesage"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"definition": definition_json(parameters={"temperature": 5})}, "temperature"),
        ({"definition": definition_json(prompts="not an object")}, "prompts"),
        ({"author": {"name": "Ada", "email": "not-an-email"}}, "author.email"),
        # git refuses a name of nothing but what it strips from an identity's ends (its 500
        # until 2026-12-06), and would record another name or email than the one given.
        ({"author": {"name": ".", "email": "ada@desk.example"}}, "author.name"),
        ({"author": {"name": " Ada", "email": "ada@desk.example"}}, "author.name"),
        ({"author": {"name": "Ada,", "email": "ada@desk.example"}}, "author.name"),
        ({"author": {"name": "Ada", "email": "ada@desk.example."}}, "author.email"),
        ({"author": {"name": "Ada", "email": "'ada@desk.example"}}, "author.email"),
        ({"message": ""}, "message"),
        # A message of whitespace alone left the trailers at the start of the commit, where
        # the next start did not find them: the version vanished (accepted until 2026-12-06).
        ({"message": " "}, "message"),
        ({"message": "\n\t \u00a0"}, "message"),
        ({"aliases": ["Not Valid"]}, "aliases"),
        # Python's `$` also matches before a final newline: names ending in one were taken
        # (until 2026-12-06), and git recorded or refused them.
        ({"author": {"name": "Ada\n", "email": "ada@desk.example"}}, "author.name"),
        ({"author": {"name": "Ada", "email": "ada@desk.example\n"}}, "author.email"),
        ({"aliases": ["staging\n"]}, "aliases"),
        ({"definition": definition_json(prompts={"system\n": "hi"})}, "prompts"),
    ],
)
async def test_invalid_values_are_named(
    versioning: Client, change: dict[str, Any], field: str
) -> None:
    body = problem(
        await versioning.post(f"/workflows/{WORKFLOW}/versions", json={**version_body(), **change}),
        400,
    )
    assert field in body["detail"]


async def test_an_empty_stop_sequence_is_refused_naming_the_field(versioning: Client) -> None:
    # Taken until 2026-12-07 and passed on to the runner's LLM calls.
    definition = definition_json(parameters={"stop": ["</answer>", ""]})

    body = problem(
        await versioning.post(f"/workflows/{WORKFLOW}/versions", json=version_body(definition)),
        400,
    )

    assert "definition.parameters.stop[1]" in body["detail"]
    assert (await versioning.get("/workflows")).json()["workflows"] == [], "nothing stored"


async def test_a_version_stored_with_an_empty_stop_sequence_is_read_without_it(
    make_versioning: Callable[..., Any], repo_path: Path
) -> None:
    stored = definition_json(parameters={"temperature": 0.2, "stop": ["", "</answer>", ""]})
    write_as_an_older_release(repo_path, [(stored, "Stop early")])
    versioning = await make_versioning()

    champion = await versioning.get(f"/workflows/{WORKFLOW}")
    rolled = await versioning.post(
        f"/workflows/{WORKFLOW}/rollback", json={"version": 1, "author": AUTHOR}
    )

    assert champion.status_code == 200, champion.text
    parameters = champion.json()["definition"]["parameters"]
    assert parameters["stop"] == ["</answer>"]
    assert parameters["temperature"] == 0.2, "the rest as stored"
    assert rolled.status_code == 201, rolled.text
    restored = (await versioning.get(f"/workflows/{WORKFLOW}/versions/2")).json()
    assert restored["definition"]["parameters"]["stop"] == ["</answer>"]


async def test_missing_fields_are_named(versioning: Client) -> None:
    body = problem(
        await versioning.post(f"/workflows/{WORKFLOW}/versions", json={"definition": {}}), 400
    )
    assert "workflow_id" in body["detail"] or "author" in body["detail"]


async def test_malformed_json_is_a_400(versioning: Client) -> None:
    body = problem(
        await versioning.post(
            f"/workflows/{WORKFLOW}/versions",
            content=b'{"definition": {"workflow_id": ',
            headers={"content-type": "application/json"},
        ),
        400,
    )
    assert body["detail"].startswith("request body is not valid JSON")


async def test_a_body_nested_too_deep_is_a_400(versioning: Client) -> None:
    """The hook that names unknown keys read the body first: deeper than msgspec reads, its
    RecursionError was a 500 before Litestar saw the body."""
    deep = b'{"definition": {"params": ' + b"[" * 5000 + b"]" * 5000 + b"}}"

    body = problem(
        await versioning.post(
            f"/workflows/{WORKFLOW}/versions",
            content=deep,
            headers={"content-type": "application/json"},
        ),
        400,
    )

    assert body["detail"] == "body: nested too deep to read"
    assert (await versioning.get("/workflows")).json()["workflows"] == []


async def test_the_path_and_the_definition_must_name_the_same_workflow(versioning: Client) -> None:
    body = problem(
        await versioning.post("/workflows/risk_review/versions", json=version_body()), 400
    )
    assert "risk_review" in body["detail"]
    assert WORKFLOW in body["detail"]


async def test_unknown_workflows_and_versions_are_404s(versioning: Client) -> None:
    await create_version(versioning)
    await create_version(versioning)

    assert "no versions" in problem(await versioning.get("/workflows/nope"), 404)["detail"]
    assert "no versions" in problem(await versioning.get("/workflows/nope/versions"), 404)["detail"]
    missing = problem(await versioning.get(f"/workflows/{WORKFLOW}/versions/3"), 404)
    assert "versions are 1 to 2" in missing["detail"]
    problem(
        await versioning.put(f"/workflows/{WORKFLOW}/aliases/champion", json={"version": 3}), 404
    )
    problem(await versioning.put("/workflows/nope/aliases/champion", json={"version": 1}), 404)


async def test_bad_names_in_paths_are_400s(versioning: Client) -> None:
    problem(await versioning.get("/workflows/bad.name"), 400)
    problem(await versioning.get(f"/workflows/{WORKFLOW}%0A"), 400)
    created = await versioning.post(
        f"/workflows/{WORKFLOW}%0A/versions",
        json=version_body(definition_json(f"{WORKFLOW}\n")),
    )
    assert "workflow_id" in problem(created, 400)["detail"]  # a 500 from git until 2026-12-06
    await create_version(versioning)
    problem(
        await versioning.put(f"/workflows/{WORKFLOW}/aliases/staging%0A", json={"version": 1}),
        400,
    )
    problem(await versioning.get(f"/workflows/{WORKFLOW}/versions/0"), 400)
    problem(await versioning.get(f"/workflows/{WORKFLOW}?alias=Not%20Valid"), 400)


async def test_latest_cannot_be_moved(versioning: Client) -> None:
    await create_version(versioning)
    body = problem(
        await versioning.put(f"/workflows/{WORKFLOW}/aliases/latest", json={"version": 1}), 400
    )
    assert "latest" in body["detail"]
    assert (
        "latest"
        in problem(
            await versioning.post(
                f"/workflows/{WORKFLOW}/versions", json=version_body(aliases=["latest"])
            ),
            400,
        )["detail"]
    )


async def test_experiments_refuse_what_cannot_run(versioning: Client) -> None:
    await create_version(versioning)
    await create_version(versioning)

    def experiment(**change: Any) -> dict[str, Any]:
        return {"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 2}, **change}

    cases = [
        (experiment(variants={"A": 1, "B": 9}), 400, "no version 9"),
        (experiment(workflow_id="nope"), 400, "nope"),
        (experiment(variants={"A": 1}), 400, "variants"),
        (experiment(split={"A": 0.5, "C": 0.5}), 400, "C not among the variants"),
        (experiment(split={"A": 0.5, "B": 0.6}), 400, "sum to 1.1"),
        (experiment(control="Z"), 400, "control"),
        (experiment(alpha=0.9), 400, "alpha"),
        (experiment(min_samples=1), 400, "min_samples"),
        (experiment(metric="revenue"), 400, "metric"),
        (experiment(unknown_knob=True), 400, "unknown_knob"),
    ]
    for request, status, expected in cases:
        body = problem(await versioning.post("/experiments", json=request), status)
        assert expected in body["detail"], (request, body)

    started = (await versioning.post("/experiments", json=experiment())).json()
    second = problem(await versioning.post("/experiments", json=experiment()), 409)
    assert started["id"] in second["detail"]
    problem(await versioning.get("/experiments/exp_nope"), 404)
    problem(await versioning.post("/experiments/exp_nope/assign", json={"unit": "u"}), 404)
    problem(await versioning.post(f"/experiments/{started['id']}/assign", json={}), 400)

    unit = "doc-1"
    assigned = (
        await versioning.post(f"/experiments/{started['id']}/assign", json={"unit": unit})
    ).json()["variant"]
    other = "B" if assigned == "A" else "A"
    wrong = problem(
        await versioning.post(
            f"/experiments/{started['id']}/outcomes",
            json={"unit": unit, "variant": other, "success": True, "latency_ms": 10},
        ),
        400,
    )
    assert f"assigned to variant {assigned!r}" in wrong["detail"]
    problem(
        await versioning.post(
            f"/experiments/{started['id']}/outcomes",
            json={"unit": unit, "success": True, "latency_ms": -1},
        ),
        400,
    )

    await versioning.post(f"/experiments/{started['id']}/stop", json={"reason": "enough"})
    stopped_assign = problem(
        await versioning.post(f"/experiments/{started['id']}/assign", json={"unit": unit}), 409
    )
    assert "enough" in stopped_assign["detail"]
    problem(
        await versioning.post(
            f"/experiments/{started['id']}/outcomes",
            json={"unit": unit, "success": True, "latency_ms": 10},
        ),
        409,
    )
