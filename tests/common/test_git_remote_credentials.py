"""A version manager pushing to ``https://user:secret@host/repo.git`` keeps the secret off the
disk and out of sight: ``.git/config`` holds the bare URL, git gets the credentials per push,
and neither ``/health`` nor the logs show them.

The remote is real: ``git http-backend`` behind an HTTP server that asks for Basic auth.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from git import Repo
from litestar.testing import AsyncTestClient

from services.versioning.app import create_app
from services.versioning.settings import VersioningSettings
from tests.support.processes import ServiceProcess, free_port

USER = "desk-bot"
SECRET = "s3cret-push-password"
DEFINITION = {
    "definition": {"workflow_id": "doc_analysis", "model": "llama3.1:8b"},
    "author": {"name": "Ada", "email": "ada@desk.example"},
    "message": "first version",
}
PUSH_WAIT_S = 60  # a push that never lands fails the test; a slow one does not


@dataclass
class GitServer:
    url: str
    root: Path
    authorizations: list[str] = field(default_factory=list)

    def remote_head(self) -> str | None:
        with Repo(self.root / "defs.git") as remote:
            heads = {head.name: head.commit.hexsha for head in remote.heads}
        return heads.get("main")


def _handler(server: GitServer) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()

    class GitHTTPBackend(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, *_: Any) -> None:
            pass

        def _serve(self) -> None:
            authorization = self.headers.get("Authorization", "")
            server.authorizations.append(authorization)
            if authorization != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            environment = {
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": USER,
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            answer = subprocess.run(
                ["git", "http-backend"],
                input=body,
                env=environment,
                capture_output=True,
                check=False,
            ).stdout
            head, _, payload = answer.partition(b"\r\n\r\n")
            status = 200
            headers: list[tuple[str, str]] = []
            for line in head.decode().splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                else:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return GitHTTPBackend


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    root = tmp_path / "served"
    Repo.init(root / "defs.git", bare=True, initial_branch="main").close()
    server = GitServer(url="", root=root)
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.url = f"http://127.0.0.1:{http.server_address[1]}/defs.git"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield server
    http.shutdown()
    http.server_close()


def _with_credentials(url: str, password: str = SECRET) -> str:
    return url.replace("http://", f"http://{USER}:{password}@")


async def _until(check: Any) -> Any:
    deadline = time.monotonic() + PUSH_WAIT_S
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_a_push_authenticates_but_the_config_holds_only_the_bare_url(
    tmp_path: Path, git_server: GitServer
) -> None:
    settings = VersioningSettings(
        repo_path=str(tmp_path / "repo"),
        remote=_with_credentials(git_server.url),
        log_level="WARNING",
    )
    async with AsyncTestClient(app=create_app(settings)) as service:
        created = await service.post("/workflows/doc_analysis/versions", json=DEFINITION)
        assert created.status_code == 201, created.text

        async def pushed() -> dict[str, Any] | None:
            health = (await service.get("/health")).json()
            return health if health["details"]["push"]["last_pushed_at"] else None

        health = await _until(pushed)
    assert health is not None, "the push never reached the remote"

    with Repo(tmp_path / "repo") as local:
        assert git_server.remote_head() == local.heads.main.commit.hexsha
    config = (tmp_path / "repo" / ".git" / "config").read_text()
    assert f"url = {git_server.url}" in config
    assert SECRET not in config
    assert USER not in config
    assert SECRET not in str(health)
    assert health["details"]["push"]["remote"] == git_server.url
    assert any(a.startswith("Basic ") for a in git_server.authorizations), "git authenticated"


async def test_an_older_config_with_credentials_is_cleaned_at_start(
    tmp_path: Path, git_server: GitServer
) -> None:
    repo_path = tmp_path / "repo"
    Repo.init(repo_path, initial_branch="main").close()
    with Repo(repo_path) as repo:
        repo.create_remote("origin", _with_credentials(git_server.url))
    settings = VersioningSettings(
        repo_path=str(repo_path), remote=_with_credentials(git_server.url), log_level="WARNING"
    )

    async with AsyncTestClient(app=create_app(settings)) as service:
        assert (await service.get("/health")).status_code == 200

    assert SECRET not in (repo_path / ".git" / "config").read_text()


def test_a_refused_push_shows_no_secret_in_health_logs_or_config(
    tmp_path: Path, git_server: GitServer
) -> None:
    wrong = "wr0ng-push-password"
    process = ServiceProcess(
        "services.versioning.app:app",
        free_port(),
        {
            "VERSIONING_REPO_PATH": str(tmp_path / "repo"),
            "VERSIONING_REMOTE": _with_credentials(git_server.url, wrong),
            "LOG_LEVEL": "DEBUG",
        },
        tmp_path / "versioning.log",
    ).start()
    try:
        httpx.post(f"{process.url}/workflows/doc_analysis/versions", json=DEFINITION)
        deadline = time.monotonic() + PUSH_WAIT_S
        health = httpx.get(f"{process.url}/health").json()
        while not health["details"]["push"]["last_error"] and time.monotonic() < deadline:
            time.sleep(0.05)
            health = httpx.get(f"{process.url}/health").json()
    finally:
        process.stop()

    assert health["status"] == "degraded"
    assert health["details"]["push"]["last_error"]
    assert wrong not in str(health)
    assert "push to the remote failed" in process.logs()
    assert wrong not in process.logs()
    assert wrong not in (tmp_path / "repo" / ".git" / "config").read_text()
    assert git_server.remote_head() is None
