"""Rollback restores content as a new version: history kept, HEAD on the branch, tags intact."""

from __future__ import annotations

import json
from collections.abc import Callable

from git import Repo

from tests.versioning.conftest import (
    AUTHOR,
    WORKFLOW,
    Client,
    create_version,
    definition_json,
    problem,
)


async def test_rollback_restores_content_and_keeps_history(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    good = definition_json(prompts={"system": "You are a financial analyst."})
    bad = definition_json(prompts={"system": "Answer in rhymes."}, model="tiny:1b")
    await create_version(versioning, good)
    await create_version(versioning, definition_json(model="llama3.1:70b"))
    await create_version(versioning, bad)
    await versioning.put(f"/workflows/{WORKFLOW}/aliases/champion", json={"version": 3})
    repo = git_repo()
    tags_before = {t.name: t.commit.hexsha for t in repo.tags}
    head_before = repo.head.commit.hexsha
    commits_before = int(repo.git.rev_list("--count", "main"))

    response = await versioning.post(
        f"/workflows/{WORKFLOW}/rollback",
        json={"version": 1, "author": AUTHOR, "message": "Rhyming answers confused the desk."},
    )

    assert response.status_code == 201, response.text
    restored = response.json()
    assert restored["version"] == 4
    assert restored["restored_from"] == 1
    assert (
        restored["definition"]
        == (await versioning.get(f"/workflows/{WORKFLOW}/versions/1")).json()["definition"]
    )
    assert restored["aliases"] == ["champion", "latest"]
    assert restored["message"].startswith(
        f"Roll back {WORKFLOW} to version 1 (champion was version 3)"
    )
    champion = (await versioning.get(f"/workflows/{WORKFLOW}")).json()
    assert (champion["version"], champion["definition"]["prompts"]) == (4, good["prompts"])
    # The version rolled back from is still there, unchanged.
    three = (await versioning.get(f"/workflows/{WORKFLOW}/versions/3")).json()
    assert three["definition"]["prompts"] == bad["prompts"]
    history = (await versioning.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert [v["version"] for v in history["versions"]] == [4, 3, 2, 1]

    # In git: one new commit on top, nothing rewritten, HEAD still on the branch.
    repo = git_repo()
    assert not repo.head.is_detached
    assert repo.active_branch.name == "main"
    assert repo.head.commit.hexsha == restored["commit"]
    assert repo.is_ancestor(repo.commit(head_before), repo.commit(restored["commit"]))
    assert int(repo.git.rev_list("--count", "main")) == commits_before + 1
    assert {t.name: t.commit.hexsha for t in repo.tags if t.name in tags_before} == tags_before
    assert repo.tags[f"{WORKFLOW}-v4"].commit.hexsha == restored["commit"]
    message = str(repo.head.commit.message)
    assert "Roll back doc_analysis to version 1" in message
    assert "PAS-Restores: 1" in message
    assert not repo.is_dirty(untracked_files=True)
    tree = repo.head.commit.tree
    on_branch = json.loads((tree / f"workflows/{WORKFLOW}.json").data_stream.read())
    assert on_branch["prompts"] == good["prompts"]
    assert json.loads((tree / f"aliases/{WORKFLOW}.json").data_stream.read()) == {"champion": 4}


async def test_rollback_of_an_unknown_version_changes_nothing(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    await create_version(versioning)
    head = git_repo().head.commit.hexsha

    body = problem(
        await versioning.post(
            f"/workflows/{WORKFLOW}/rollback", json={"version": 9, "author": AUTHOR}
        ),
        404,
    )

    assert "no version 9" in body["detail"]
    assert git_repo().head.commit.hexsha == head
    problem(
        await versioning.post("/workflows/nope/rollback", json={"version": 1, "author": AUTHOR}),
        404,
    )
