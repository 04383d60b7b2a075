"""A write git refuses leaves nothing behind; what a crash leaves is repaired at the next start.

git runs the ``reference-transaction`` hook for every ref update; a hook that refuses branch
moves (as a policy hook might) makes git fail a write after its tag was created, the hardest
place to fail.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from git import Repo

from services.versioning.git_repository import RepositoryError
from tests.versioning.conftest import (
    AUTHOR,
    WORKFLOW,
    Client,
    create_version,
    definition_json,
    problem,
    write_as_an_older_release,
)

FREEZE_BRANCHES = """#!/bin/sh
if [ "$1" = prepared ]; then
    while read -r old new ref; do
        case "$ref" in
            refs/heads/*) echo "branch updates are frozen" >&2; exit 1 ;;
        esac
    done
fi
exit 0
"""


def install_hook(repo_path: Path) -> Path:
    hook = repo_path / ".git" / "hooks" / "reference-transaction"
    hook.write_text(FREEZE_BRANCHES)
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    return hook


def snapshot(repo: Repo) -> dict[str, Any]:
    return {
        "head": repo.head.commit.hexsha,
        "tags": sorted(t.name for t in repo.tags),
        "dirty": repo.is_dirty(untracked_files=True),
        "file": (Path(str(repo.working_tree_dir)) / f"workflows/{WORKFLOW}.json").read_text(),
        "staging": sorted(p.name for p in (Path(repo.git_dir) / "pas-staging").glob("*")),
    }


async def test_a_refused_write_leaves_no_file_tag_or_commit(
    versioning: Client, repo_path: Path, git_repo: Callable[[], Repo]
) -> None:
    await create_version(versioning, definition_json())
    before = snapshot(git_repo())
    hook = install_hook(repo_path)

    created = await versioning.post(
        f"/workflows/{WORKFLOW}/versions",
        json={
            "definition": definition_json(model="other:7b"),
            "author": AUTHOR,
            "message": "Will be refused",
        },
    )
    moved = await versioning.put(f"/workflows/{WORKFLOW}/aliases/staging", json={"version": 1})
    rolled = await versioning.post(
        f"/workflows/{WORKFLOW}/rollback", json={"version": 1, "author": AUTHOR}
    )

    for response in (created, moved, rolled):
        body = problem(response, 500)
        assert "branch updates are frozen" in body["detail"]
        assert "unchanged" in body["detail"]
    assert snapshot(git_repo()) == before, "no tag, commit, file or leftover of the failed writes"
    history = (await versioning.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert [v["version"] for v in history["versions"]] == [1]
    assert history["aliases"] == {"champion": 1}
    metrics = (await versioning.get("/metrics")).text
    assert "pas_versioning_write_failures_total 3.0" in metrics

    hook.unlink()
    retried = await create_version(versioning, definition_json(model="other:7b"))
    assert retried["version"] == 2, "the refused write did not use up a version number"
    assert git_repo().git.fsck("--strict", with_extended_output=True)[0] == 0


async def test_the_next_start_repairs_what_a_crash_left(
    make_versioning: Callable[..., Any], repo_path: Path, git_repo: Callable[[], Repo]
) -> None:
    first = await make_versioning()
    await create_version(first, definition_json())
    await create_version(first, definition_json(model="llama3.1:70b"))
    repo = git_repo()
    good_head = repo.head.commit.hexsha
    # A process killed between tagging and moving the branch leaves a tag off the branch...
    tree = repo.head.commit.tree.hexsha
    orphan = repo.git.commit_tree(
        tree, "-p", good_head, "-m", f"half\n\nPAS-Workflow: {WORKFLOW}\nPAS-Version: 3\n"
    )
    repo.git.tag("-a", "-m", "interrupted", f"{WORKFLOW}-v3", orphan)
    # ...someone checked out a tag the way the spec's rollback does, and edited a file.
    repo.git.checkout(f"{WORKFLOW}-v1")
    (repo_path / f"workflows/{WORKFLOW}.json").write_text('{"half": "written"')

    second = await make_versioning()

    repo = git_repo()
    assert not repo.head.is_detached
    assert repo.active_branch.name == "main"
    assert repo.head.commit.hexsha == good_head
    assert f"{WORKFLOW}-v3" not in [t.name for t in repo.tags]
    assert not repo.is_dirty(untracked_files=True)
    on_disk = json.loads((repo_path / f"workflows/{WORKFLOW}.json").read_text())
    assert on_disk["model"] == "llama3.1:70b"
    history = (await second.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert [v["version"] for v in history["versions"]] == [2, 1]
    assert (await create_version(second, definition_json()))["version"] == 3


async def test_a_version_whose_message_was_blank_survives_a_restart(
    make_versioning: Callable[..., Any], repo_path: Path
) -> None:
    # Written as releases before 2026-12-06 did for a message of spaces: the trailers open
    # the commit message, and git reads them back without the blank lines before them.
    write_as_an_older_release(
        repo_path, [(definition_json(model="m1"), "First"), (definition_json(model="m2"), " ")]
    )

    restarted = await make_versioning()

    history = (await restarted.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert [v["version"] for v in history["versions"]] == [2, 1]
    assert history["versions"][0]["message"] == ""
    assert history["aliases"] == {"champion": 2}
    assert (await restarted.get(f"/workflows/{WORKFLOW}")).json()["definition"]["model"] == "m2"
    assert (await create_version(restarted, definition_json()))["version"] == 3


async def test_a_version_tag_the_index_passes_over_keeps_its_number(
    make_versioning: Callable[..., Any], git_repo: Callable[[], Repo]
) -> None:
    first = await make_versioning()
    await create_version(first, definition_json())
    # A lightweight tag on the branch is not a version the version manager wrote...
    git_repo().git.tag(f"{WORKFLOW}-v2")

    restarted = await make_versioning()

    history = (await restarted.get(f"/workflows/{WORKFLOW}/versions")).json()
    assert [v["version"] for v in history["versions"]] == [1]
    # ...but it holds the name v2: the next version is 3 instead of a write git refuses.
    assert (await create_version(restarted, definition_json(model="m3")))["version"] == 3
    assert (await create_version(restarted, definition_json(model="m4")))["version"] == 4


async def test_an_existing_folder_that_is_not_a_repository_is_refused(
    tmp_path: Path, make_versioning: Callable[..., Any]
) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("not a git repository")

    with pytest.raises(ExceptionGroup) as refused:
        await make_versioning(repo_path=str(occupied))

    assert refused.group_contains(RepositoryError, match="not empty and not a git repository")
    assert (occupied / "notes.txt").read_text() == "not a git repository"
