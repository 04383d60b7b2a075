"""The image's command (``python -m scripts.serve``) against the code and the start scripts.

Runs for real where it can: the entrypoint starts the registry as the image would, its
``--health`` mode (the image's HEALTHCHECK) tells a healthy service from a stopped one, and
the image's default of listening beyond loopback refuses to start without a token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scripts.serve import SERVICES
from tests.deploy.code_facts import (
    SETTINGS,
    app_module_path,
    settings_class,
    start_script_services,
    top_level_names,
)
from tests.support.processes import REPO_ROOT, free_port


def test_entrypoint_runs_what_the_start_scripts_run() -> None:
    scripts = start_script_services()

    assert set(scripts) == set(SERVICES)
    for name, service in SERVICES.items():
        assert scripts[name] == (service.app, service.env_prefix, service.port), name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_app_and_settings_exist_with_the_entrypoint_port(name: str) -> None:
    service = SERVICES[name]
    module_path = app_module_path(name)
    attribute = service.app.partition(":")[2]
    settings = settings_class(name)
    port_field = next(f for f in settings.__struct_fields__ if f == "port")

    assert module_path.is_file(), service.app
    names = top_level_names(module_path)
    assert attribute in names, f"{service.app}: no top-level {attribute}"
    assert settings.__name__ in names, f"{service.app} does not load {SETTINGS[name]}"
    assert settings.env_prefix == service.env_prefix
    assert getattr(settings(), port_field) == service.port


def _serve(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.serve", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PAS_ENV_FILE": "", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _health(env: dict[str, str], cwd: Path) -> int:
    return _serve(["registry", "--health"], env, cwd).wait(30)


def test_entrypoint_serves_the_registry_and_its_health_mode_tells(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "SERVICE": "registry",
        "PAS_HOST": "127.0.0.1",
        "REGISTRY_PORT": str(port),
        "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
    }
    assert _health(env, tmp_path) == 1, "nothing listens yet"
    process = _serve([], env, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while _health(env, tmp_path) != 0:
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "the registry did not become healthy"
            time.sleep(0.2)
        body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert body["status"] == "healthy"
        assert body["port"] == port
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()

    # uvicorn is the process (exec, no shell between), so the engine's SIGTERM drains it;
    # uvicorn then re-raises the signal, hence -SIGTERM rather than 0.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in output
    assert _health(env, tmp_path) == 1


def test_listening_beyond_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    process = _serve(
        ["registry"],
        {
            "PAS_HOST": "0.0.0.0",
            "REGISTRY_PORT": str(free_port()),
            "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        },
        tmp_path,
    )
    output = process.communicate(timeout=60)[0].decode()

    assert process.returncode != 0
    assert "REGISTRY_TOKEN" in output


def test_an_unknown_service_is_refused_with_the_names() -> None:
    process = _serve(["no_such_service"], {}, REPO_ROOT)
    output = process.communicate(timeout=30)[0].decode()

    assert process.returncode == 2
    assert "registry" in output
