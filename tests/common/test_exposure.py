"""A service that other machines could reach refuses to start with its writes open.

Real processes, started the ways an operator starts them: uvicorn's command line (as the
README and the start scripts do), ``python -m`` with ``<PREFIX>HOST``, and a start script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from libs.common.kit.exposure import is_loopback, listen_host, listen_port
from tests.support.processes import REPO_ROOT, free_port

REGISTRY_APP = "services.registry.registry_service:app"
START_TIMEOUT_S = 60


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This machine's environment without any token or exposure setting, plus ``extra``."""
    cleaned = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(("_TOKEN", "_HOST", "_ALLOW_UNAUTHENTICATED"))
    }
    return {
        **cleaned,
        "PAS_ENV_FILE": "",
        "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db",
        **extra,
    }


def _uvicorn(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", REGISTRY_APP, "--host", host, "--port", str(port)]


def _refusal(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )


def test_bound_beyond_loopback_without_a_token_the_registry_refuses_to_start(
    tmp_path: Path,
) -> None:
    port = free_port()

    refused = _refusal(_uvicorn("0.0.0.0", port), _environment(tmp_path))

    assert refused.returncode == 2
    assert "configuration error: REGISTRY_TOKEN:" in refused.stderr
    assert "0.0.0.0" in refused.stderr
    assert "PAS_TOKEN" in refused.stderr
    assert "PAS_ALLOW_UNAUTHENTICATED=1" in refused.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)


@pytest.mark.parametrize(
    "setting",
    [{"REGISTRY_TOKEN": "s3cret"}, {"PAS_TOKEN": "s3cret"}, {"PAS_ALLOW_UNAUTHENTICATED": "1"}],
    ids=["own token", "shared token", "open on purpose"],
)
def test_with_a_token_or_on_purpose_it_starts(tmp_path: Path, setting: dict[str, str]) -> None:
    port = free_port()
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen(
        _uvicorn("0.0.0.0", port),
        cwd=REPO_ROOT,
        env=_environment(tmp_path, **setting),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        health = None
        deadline = time.monotonic() + START_TIMEOUT_S  # a hung start fails, never a slow one
        while process.poll() is None and health is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.1)
        assert health is not None, (tmp_path / "registry.log").read_text()
        assert health.status_code == 200
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def test_the_processor_refuses_a_non_loopback_host_setting(tmp_path: Path) -> None:
    refused = _refusal(
        [sys.executable, "-m", "services.kafka_llm_processor"],
        _environment(tmp_path, PROCESSOR_HOST="0.0.0.0", PROCESSOR_PORT=str(free_port())),
    )

    assert refused.returncode == 2, refused.stderr
    assert "configuration error: PROCESSOR_TOKEN:" in refused.stderr


def test_the_start_script_shows_why(tmp_path: Path) -> None:
    env = _environment(
        tmp_path,
        PAS_HOME=str(tmp_path / "pas"),
        PAS_PYTHON=sys.executable,
        REGISTRY_HOST="0.0.0.0",
        REGISTRY_PORT=str(free_port()),
    )

    started = subprocess.run(
        ["bash", "scripts/start_registry.sh"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )

    assert started.returncode != 0
    assert "configuration error: REGISTRY_TOKEN:" in started.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("pas.internal", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_host_checked_is_the_one_uvicorn_binds() -> None:
    uvicorn = ["/venv/bin/uvicorn", "app:app"]
    module = ["/venv/lib/python3.11/site-packages/uvicorn/__main__.py", "app:app"]

    assert listen_host("127.0.0.1", [*uvicorn, "--host", "0.0.0.0"], {}) == "0.0.0.0"
    assert listen_host("127.0.0.1", [*module, "--host=10.0.0.5"], {}) == "10.0.0.5"
    assert listen_host("0.0.0.0", uvicorn, {}) == "127.0.0.1", "uvicorn's default"
    assert listen_host("127.0.0.1", uvicorn, {"UVICORN_HOST": "::"}) == "::"
    assert is_loopback(listen_host("0.0.0.0", [*uvicorn, "--uds", "/tmp/s"], {}))
    assert listen_host("0.0.0.0", ["-m", "pytest"], {}) == "0.0.0.0"


def test_the_port_reported_is_the_one_uvicorn_binds() -> None:
    uvicorn = ["/venv/bin/uvicorn", "app:app"]
    module = ["/venv/lib/python3.11/site-packages/uvicorn/__main__.py", "app:app"]

    assert listen_port(8050, [*uvicorn, "--port", "8077"], {}) == 8077
    assert listen_port(8050, [*module, "--port=8078"], {}) == 8078
    assert listen_port(8050, uvicorn, {}) == 8000, "uvicorn's default"
    assert listen_port(8050, uvicorn, {"UVICORN_PORT": "9001"}) == 9001
    assert listen_port(8050, [*uvicorn, "--uds", "/tmp/s"], {}) == 8050, "no TCP port"
    assert listen_port(8050, [*uvicorn, "--fd", "3"], {}) == 8050, "a socket it was given"
    assert listen_port(8050, ["-m", "pytest"], {}) == 8050, "not uvicorn's command line"
