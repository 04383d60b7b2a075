"""Version manager fixtures: the app on a real git repository in a temporary folder."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from git import Repo
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.versioning.app import create_app
from services.versioning.catalog import encode_document
from services.versioning.git_repository import (
    TRAILER_VERSION,
    TRAILER_WORKFLOW,
    Identity,
    TagRequest,
    WorkflowRepository,
    aliases_path,
    compose_message,
    definition_path,
    tag_name,
)
from services.versioning.settings import VersioningSettings
from tests.support.processes import ServiceProcess, free_port

VERSIONING_APP = "services.versioning.app:app"
WORKFLOW = "doc_analysis"
AUTHOR = {"name": "Ada Lovelace", "email": "ada@desk.example"}

Client = AsyncTestClient[Any]


def definition_json(workflow_id: str = WORKFLOW, **overrides: Any) -> dict[str, Any]:
    """A definition of the runner's document-analysis graph; overrides replace top-level keys."""
    body: dict[str, Any] = {
        "workflow_id": workflow_id,
        "description": "Summarise a filing and flag risks for the desk.",
        "prompts": {
            "system": "You are a financial analyst.",
            "classify": "Which desk does this document concern?",
        },
        "model": "llama3.1:8b",
        "parameters": {"temperature": 0.2, "max_tokens": 256, "stop": ["</answer>"]},
        "metadata": {"owner": "desk-a", "tags": ["fx"]},
    }
    body.update(copy.deepcopy(overrides))
    return body


async def create_version(
    client: Client,
    definition: dict[str, Any] | None = None,
    *,
    workflow_id: str = WORKFLOW,
    message: str = "Tune the prompts",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        f"/workflows/{workflow_id}/versions",
        json={
            "definition": definition or definition_json(workflow_id),
            "author": AUTHOR,
            "message": message,
            **extra,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def write_as_an_older_release(
    repo_path: Path, versions: list[tuple[dict[str, Any], str]], workflow_id: str = WORKFLOW
) -> None:
    """Commit and tag ``(definition, message)`` as versions 1, 2, ... the way the version
    manager writes them, with no check of the definition or the message: what an older
    release took (the newest version is champion)."""
    older = WorkflowRepository(repo_path, branch="main", committer=Identity("PAS", "pas@x.example"))
    older.open()
    for version, (definition, message) in enumerate(versions, start=1):
        trailers = {TRAILER_WORKFLOW: workflow_id, TRAILER_VERSION: str(version)}
        older.commit(
            {
                definition_path(workflow_id): encode_document(definition),
                aliases_path(workflow_id): encode_document({"champion": version}),
            },
            message=compose_message(message, trailers),
            author=Identity(AUTHOR["name"], AUTHOR["email"]),
            tag=TagRequest(tag_name(workflow_id, version), f"{workflow_id} version {version}"),
        )
    older.close()


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem body of a refused request, checked for the fields every refusal has."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


@pytest.fixture
def versioning_settings(tmp_path: Path) -> VersioningSettings:
    return VersioningSettings(repo_path=str(tmp_path / "repo"), log_level="WARNING")


@pytest.fixture
def repo_path(versioning_settings: VersioningSettings) -> Path:
    return Path(versioning_settings.repo_path)


@pytest.fixture
def git_repo(repo_path: Path) -> Iterator[Callable[[], Repo]]:
    """Open the service's repository with gitpython, independently of the service."""
    opened: list[Repo] = []

    def open_repo() -> Repo:
        repo = Repo(repo_path)
        opened.append(repo)
        return repo

    yield open_repo
    for repo in opened:
        repo.close()


@pytest.fixture
def make_versioning(
    versioning_settings: VersioningSettings, open_app: Callable[[Litestar], Any]
) -> Callable[..., Any]:
    """Open version manager apps (lifespan included) with settings overrides."""

    async def make(**overrides: Any) -> Client:
        app = create_app(msgspec.structs.replace(versioning_settings, **overrides))
        client: Client = await open_app(app)
        return client

    return make


@pytest.fixture
async def versioning(make_versioning: Callable[..., Any]) -> Client:
    client: Client = await make_versioning()
    return client


@pytest.fixture
def versioning_process_factory(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start the version manager as a real uvicorn process (stopped at the end)."""
    started: list[ServiceProcess] = []

    def start(port: int | None = None, **env: str) -> ServiceProcess:
        environment = {"VERSIONING_REPO_PATH": str(tmp_path / "repo"), **env}
        process = ServiceProcess(
            VERSIONING_APP,
            port or free_port(),
            environment,
            tmp_path / f"versioning-{len(started)}.log",
        )
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()
