"""With VERSIONING_REMOTE set, every change reaches the remote; a broken remote never blocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from git import Repo

from tests.support.polling import poll_async
from tests.versioning.conftest import AUTHOR, WORKFLOW, Client, create_version, definition_json


async def test_changes_are_pushed_to_the_remote(
    tmp_path: Path, make_versioning: Callable[..., Any], git_repo: Callable[[], Repo]
) -> None:
    remote_path = tmp_path / "remote.git"
    Repo.init(remote_path, bare=True, initial_branch="main").close()
    service: Client = await make_versioning(remote=str(remote_path))

    await create_version(service, definition_json())
    await create_version(service, definition_json(model="llama3.1:70b"))
    await service.post(f"/workflows/{WORKFLOW}/rollback", json={"version": 1, "author": AUTHOR})
    local = git_repo()
    head = local.head.commit.hexsha

    def remote_state() -> tuple[str, list[str]] | None:
        with Repo(remote_path) as remote:
            if "main" not in [h.name for h in remote.heads]:
                return None
            state = (remote.heads.main.commit.hexsha, sorted(t.name for t in remote.tags))
        return state if state[0] == head else None

    pushed = await poll_async(remote_state)
    assert pushed == (head, [f"{WORKFLOW}-v1", f"{WORKFLOW}-v2", f"{WORKFLOW}-v3"])
    with Repo(remote_path) as remote:
        assert all(t.tag is not None for t in remote.tags), "annotated tags, as pushed"
        assert (
            remote.tags[f"{WORKFLOW}-v2"].commit.hexsha
            == local.tags[f"{WORKFLOW}-v2"].commit.hexsha
        )
    health = (await service.get("/health")).json()
    assert health["details"]["push"]["last_error"] is None
    assert health["details"]["push"]["last_pushed_at"] is not None


async def test_an_unreachable_remote_degrades_health_but_not_writes(
    tmp_path: Path, make_versioning: Callable[..., Any]
) -> None:
    service: Client = await make_versioning(remote=str(tmp_path / "missing" / "remote.git"))

    created = await create_version(service)

    assert created["version"] == 1

    async def degraded() -> dict[str, Any] | None:
        health = (await service.get("/health")).json()
        return health if health["status"] == "degraded" else None

    health = await poll_async(degraded, timeout_s=20)
    assert health is not None
    assert health["details"]["push"]["last_error"]
    metrics = (await service.get("/metrics")).text
    assert 'pas_versioning_pushes_total{result="failed"}' in metrics
