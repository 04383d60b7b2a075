"""Concurrent writes are serialised: distinct versions, one line of history, a clean fsck."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from git import Repo

from tests.versioning.conftest import AUTHOR, WORKFLOW, Client, create_version, definition_json


async def test_twenty_concurrent_creates_give_twenty_versions(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    async def create(n: int) -> dict[str, Any]:
        return await create_version(
            versioning,
            definition_json(metadata={"attempt": n}),
            message=f"Concurrent change {n}",
        )

    async def read_while_writing() -> list[int]:
        seen = []
        for _ in range(20):
            response = await versioning.get(f"/workflows/{WORKFLOW}?alias=latest")
            if response.status_code == 200:
                seen.append(response.json()["version"])
            await asyncio.sleep(0)
        return seen

    created, seen = await asyncio.gather(
        asyncio.gather(*(create(n) for n in range(20))), read_while_writing()
    )

    assert sorted(c["version"] for c in created) == list(range(1, 21))
    assert len({c["commit"] for c in created}) == 20
    assert seen == sorted(seen), "readers never see a version go backwards"
    by_attempt = {c["definition"]["metadata"]["attempt"]: c["version"] for c in created}
    for attempt, version in by_attempt.items():
        stored = (await versioning.get(f"/workflows/{WORKFLOW}/versions/{version}")).json()
        assert stored["definition"]["metadata"] == {"attempt": attempt}
        assert stored["message"] == f"Concurrent change {attempt}"

    repo = git_repo()
    version_tags = sorted(t.name for t in repo.tags if t.name.startswith(f"{WORKFLOW}-v"))
    assert version_tags == sorted(f"{WORKFLOW}-v{n}" for n in range(1, 21))
    # One straight line: every version commit's parent is the one before it.
    commits = list(repo.iter_commits("main"))
    assert len(commits) == 21
    assert all(len(c.parents) <= 1 for c in commits)
    fsck = repo.git.fsck("--full", "--strict", with_extended_output=True)
    assert fsck[0] == 0, fsck
    assert fsck[1:] == ("", ""), fsck
    assert not repo.is_dirty(untracked_files=True)
    assert not repo.head.is_detached


async def test_concurrent_alias_moves_and_rollbacks_stay_consistent(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    for n in range(3):
        await create_version(versioning, definition_json(metadata={"n": n}))

    await asyncio.gather(
        *(
            versioning.put(f"/workflows/{WORKFLOW}/aliases/canary-{n}", json={"version": 1 + n % 3})
            for n in range(10)
        ),
        *(
            versioning.post(
                f"/workflows/{WORKFLOW}/rollback", json={"version": 1 + n % 3, "author": AUTHOR}
            )
            for n in range(5)
        ),
    )

    history = (await versioning.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert [v["version"] for v in history["versions"]] == list(range(8, 0, -1))
    assert {name: v for name, v in history["aliases"].items() if name.startswith("canary")} == {
        f"canary-{n}": 1 + n % 3 for n in range(10)
    }
    repo = git_repo()
    assert repo.git.fsck("--full", "--strict", with_extended_output=True)[0] == 0
    on_branch = json.loads((repo.head.commit.tree / f"aliases/{WORKFLOW}.json").data_stream.read())
    assert on_branch == history["aliases"]
