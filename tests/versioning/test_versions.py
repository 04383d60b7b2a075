"""Versions are tagged git commits with the caller's author and message; aliases move."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from git import Repo

from tests.versioning.conftest import (
    AUTHOR,
    WORKFLOW,
    Client,
    create_version,
    definition_json,
    problem,
)


async def test_versions_are_tagged_commits_by_the_caller(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    definitions = [
        definition_json(),
        definition_json(prompts={"system": "You are a careful financial analyst."}),
        definition_json(parameters={"temperature": 0.0}),
    ]
    created = [
        await create_version(versioning, d, message=f"Change {n}\n\nWhy: desk feedback {n}.")
        for n, d in enumerate(definitions, start=1)
    ]

    assert [c["version"] for c in created] == [1, 2, 3]
    history = (await versioning.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]
    assert history["aliases"] == {"champion": 1}
    by_version = {v["version"]: v for v in history["versions"]}

    # What git says, read with gitpython rather than through the service.
    repo = git_repo()
    assert not repo.head.is_detached
    assert repo.active_branch.name == "main"
    assert not repo.is_dirty(untracked_files=True)
    for number, definition in enumerate(definitions, start=1):
        tag = repo.tags[f"{WORKFLOW}-v{number}"]
        assert tag.tag is not None, "versions get annotated tags"
        commit = tag.commit
        assert commit.hexsha == by_version[number]["commit"]
        assert (commit.author.name, commit.author.email) == (AUTHOR["name"], AUTHOR["email"])
        assert str(commit.message).startswith(f"Change {number}\n\nWhy: desk feedback {number}.")
        assert f"PAS-Version: {number}" in str(commit.message)
        assert by_version[number]["message"] == f"Change {number}\n\nWhy: desk feedback {number}."
        created_at = datetime.fromisoformat(by_version[number]["created_at"])
        assert created_at == commit.authored_datetime
        assert created_at == datetime.fromtimestamp(tag.tag.tagged_date, UTC)
        blob = commit.tree / f"workflows/{WORKFLOW}.json"
        stored = json.loads(blob.data_stream.read())
        for key, value in definition.items():
            if key != "parameters":
                assert stored[key] == value
        assert stored["parameters"]["temperature"] == definition["parameters"]["temperature"]
    # One commit per version on one line of history, after the repository's first commit.
    assert [c.hexsha for c in repo.iter_commits("main")][:3] == [
        created[2]["commit"],
        created[1]["commit"],
        created[0]["commit"],
    ]
    newest = await asyncio.to_thread(
        Path(str(repo.working_tree_dir), f"workflows/{WORKFLOW}.json").read_text
    )
    assert json.loads(newest)["parameters"]["temperature"] == 0.0


async def test_an_author_is_recorded_as_given_punctuation_inside_included(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    """git strips punctuation and spaces from an identity's ends only (those ends are refused,
    tests/versioning/test_bad_input.py); inside, the name and email are kept whole."""
    author = {"name": "J. R. O'Neil, Jr. (FX desk)", "email": "j.r.o'neil+fx@desk.example"}

    await create_version(versioning, author=author)

    commit = git_repo().tags[f"{WORKFLOW}-v1"].commit
    assert (commit.author.name, commit.author.email) == (author["name"], author["email"])


async def test_read_a_version_and_what_aliases_point_at(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    first = definition_json()
    second = definition_json(model="llama3.1:70b")
    await create_version(versioning, first)
    await create_version(versioning, second)

    one = (await versioning.get(f"/workflows/{WORKFLOW}/versions/1")).json()
    champion = (await versioning.get(f"/workflows/{WORKFLOW}")).json()
    latest = (await versioning.get(f"/workflows/{WORKFLOW}?alias=latest")).json()

    assert one["definition"]["model"] == "llama3.1:8b"
    assert one["aliases"] == ["champion"]
    assert champion["version"] == 1, "the first version becomes champion"
    assert latest["version"] == 2
    assert latest["definition"]["model"] == "llama3.1:70b"
    assert latest["aliases"] == ["latest"]

    moved = await versioning.put(
        f"/workflows/{WORKFLOW}/aliases/champion",
        json={"version": 2, "author": AUTHOR, "message": "70B is better on filings"},
    )
    assert moved.status_code == 200, moved.text
    move = moved.json()
    assert (move["version"], move["previous"], move["changed"]) == (2, 1, True)
    assert (await versioning.get(f"/workflows/{WORKFLOW}")).json()["version"] == 2

    repo = git_repo()
    head = repo.head.commit
    assert head.hexsha == move["commit"]
    assert str(head.message).startswith(
        f"Move champion of {WORKFLOW} to version 2 (was version 1)\n\n70B is better on filings"
    )
    assert head.author.email == AUTHOR["email"]
    aliases_file = head.tree / f"aliases/{WORKFLOW}.json"
    assert json.loads(aliases_file.data_stream.read()) == {"champion": 2}

    again = (
        await versioning.put(f"/workflows/{WORKFLOW}/aliases/champion", json={"version": 2})
    ).json()
    assert (again["changed"], again["commit"]) == (False, None)
    assert repo.head.commit.hexsha == head.hexsha, "an alias already in place commits nothing"


async def test_a_new_version_can_carry_aliases_in_the_same_commit(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    await create_version(versioning)
    staged = await create_version(
        versioning, definition_json(model="qwen2.5:7b"), aliases=["staging"]
    )

    history = (await versioning.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert history["aliases"] == {"champion": 1, "staging": 2}
    assert staged["aliases"] == ["latest", "staging"]
    commit = git_repo().commit(staged["commit"])
    assert sorted(str(path) for path in commit.stats.files) == [
        f"aliases/{WORKFLOW}.json",
        f"workflows/{WORKFLOW}.json",
    ]
    staging = (await versioning.get(f"/workflows/{WORKFLOW}?alias=staging")).json()
    assert staging["definition"]["model"] == "qwen2.5:7b"


async def test_workflows_are_listed_with_their_aliases(versioning: Client) -> None:
    await create_version(versioning)
    await create_version(versioning, definition_json("risk_review"), workflow_id="risk_review")
    await create_version(versioning, definition_json("risk_review"), workflow_id="risk_review")

    listing = (await versioning.get("/workflows")).json()["workflows"]

    assert [(w["workflow_id"], w["latest"], w["aliases"]) for w in listing] == [
        (WORKFLOW, 1, {"champion": 1}),
        ("risk_review", 2, {"champion": 1}),
    ]


async def test_an_unknown_alias_names_the_ones_that_exist(versioning: Client) -> None:
    await create_version(versioning)
    body = problem(await versioning.get(f"/workflows/{WORKFLOW}?alias=staging"), 404)
    assert "staging" in body["detail"]
    assert "champion" in body["detail"]
    assert "latest" in body["detail"]


async def test_health_and_metrics_describe_the_repository(versioning: Client) -> None:
    created = await create_version(versioning)

    health = (await versioning.get("/health")).json()
    metrics = (await versioning.get("/metrics")).text

    assert health["status"] == "healthy"
    assert health["details"]["head"] == created["commit"]
    assert (health["details"]["workflows"], health["details"]["versions"]) == (1, 1)
    assert 'pas_versioning_versions_created_total{kind="create"} 1.0' in metrics
    assert "pas_versioning_versions 1.0" in metrics
    allowed = (await versioning.options(f"/workflows/{WORKFLOW}/versions")).headers["allow"]
    assert allowed == "GET, OPTIONS, POST"
    schema: dict[str, Any] = (await versioning.get("/schema/openapi.json")).json()
    assert "/workflows/{workflow_id}/compare" in schema["paths"]
    assert "/experiments/{experiment_id}/assign" in schema["paths"]
