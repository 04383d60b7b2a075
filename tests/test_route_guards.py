"""Deny by default: every write route of every PAS service needs the service's token.

Each service's app is built by its own ``create_app(settings)`` and its routes are read from
the app itself, so a route added tomorrow is checked tomorrow. A write (POST, PUT, PATCH,
DELETE) passes when the token check covers it (``create_service`` installs it on every app
with a token);
a handler that opts out (``opt=open_write(reason)``) must be on the allow-list below, with the
reason it is harmless. Then every write is called without the token, through the app's own
HTTP interface: the guarded ones answer 401, the allow-listed ones do not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

import services.analytics.app as analytics
import services.kafka_llm_processor.app as kafka_llm_processor
import services.langgraph_runner.app as langgraph_runner
import services.llm.llama31_8b_service as llama31_8b
import services.llm.tinyllama_service as tinyllama
import services.llm.tlc_classifier_service as tlc_classifier
import services.provider_router.provider_router as provider_router
import services.registry.registry_service as registry
import services.versioning.app as versioning
from libs.common.kit.auth import (
    WRITE_METHODS,
    WriteTokenMiddleware,
    open_write_reason,
)
from services.analytics.settings import AnalyticsSettings
from services.kafka_llm_processor.settings import ProcessorSettings
from services.langgraph_runner.settings import RunnerSettings
from services.llm.llama31_8b_service import Llama31Settings
from services.llm.tinyllama_service import TinyLlamaSettings
from services.llm.tlc_classifier_service import TLCSettings
from services.provider_router.desk_keys import CallerMiddleware
from services.provider_router.settings import RouterSettings
from services.registry.settings import RegistrySettings
from services.versioning.settings import VersioningSettings

TOKEN = "route-guard-test-token"

# (service, method, path) -> why anyone may call it. Keep it short: each entry is a write that
# changes no state and spends nothing. The provider router has none: /route and its chat
# completions spend (or reserve) capacity and money (they take a desk key's token too).
ALLOW_LIST: dict[tuple[str, str, str], str] = {
    ("registry", "POST", "/discover"): "a query with a JSON body: reads the catalog",
    ("llama31_8b", "POST", "/api/show"): "Ollama's model details: no model call",
    ("tinyllama", "POST", "/api/show"): "Ollama's model details: no model call",
    ("tlc_classifier", "POST", "/api/show"): "Ollama's model details: no model call",
    ("tlc_classifier", "POST", "/validate_domain"): "a lookup in the fixed taxonomy",
    ("versioning", "POST", "/experiments/{experiment_id:str}/assign"): (
        "a deterministic variant for a unit (a hash), stores nothing; asked before every run"
    ),
}


def _registry(tmp: Path) -> Litestar:
    return registry.create_app(
        RegistrySettings(database_url=f"sqlite:///{tmp}/registry.db", token=TOKEN)
    )


def _provider_router(tmp: Path) -> Litestar:
    return provider_router.create_app(RouterSettings(use_registry=False, token=TOKEN))


def _llama31_8b(tmp: Path) -> Litestar:
    return llama31_8b.create_app(Llama31Settings(register=False, token=TOKEN))


def _tinyllama(tmp: Path) -> Litestar:
    return tinyllama.create_app(TinyLlamaSettings(register=False, token=TOKEN))


def _tlc_classifier(tmp: Path) -> Litestar:
    return tlc_classifier.create_app(TLCSettings(register=False, token=TOKEN))


def _langgraph_runner(tmp: Path) -> Litestar:
    return langgraph_runner.create_app(
        RunnerSettings(
            checkpoint_path=str(tmp / "checkpoints.db"),
            store_path=str(tmp / "runs.db"),
            token=TOKEN,
        )
    )


def _versioning(tmp: Path) -> Litestar:
    return versioning.create_app(VersioningSettings(repo_path=str(tmp / "repo"), token=TOKEN))


def _analytics(tmp: Path) -> Litestar:
    return analytics.create_app(
        AnalyticsSettings(db_path=str(tmp / "analytics.duckdb"), consume=False, token=TOKEN)
    )


def _kafka_llm_processor(tmp: Path) -> Litestar:
    return kafka_llm_processor.create_app(ProcessorSettings(token=TOKEN))


SERVICES: dict[str, Callable[[Path], Litestar]] = {
    "registry": _registry,
    "provider_router": _provider_router,
    "llama31_8b": _llama31_8b,
    "tinyllama": _tinyllama,
    "tlc_classifier": _tlc_classifier,
    "langgraph_runner": _langgraph_runner,
    "versioning": _versioning,
    "analytics": _analytics,
    "kafka_llm_processor": _kafka_llm_processor,
}


def write_routes(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    """(method, path, handler) of every write the app serves, read from its routes."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(set(handler.http_methods) & WRITE_METHODS):
                yield str(method), route.path, handler


def _guarded(handler: HTTPRouteHandler) -> bool:
    middleware = handler.resolve_middleware()
    # The router's routed endpoints take a desk key's token as well as the router's.
    if any(isinstance(m, CallerMiddleware) for m in middleware):
        return True
    checked = any(isinstance(m, WriteTokenMiddleware) for m in middleware)
    return checked and open_write_reason(handler) is None


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Litestar]:
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in SERVICES.items()}


def test_every_write_needs_the_token_or_is_on_the_allow_list(apps: dict[str, Litestar]) -> None:
    unguarded: list[str] = []
    unlisted: list[str] = []
    for service, app in apps.items():
        for method, path, handler in write_routes(app):
            if _guarded(handler):
                continue
            if open_write_reason(handler) is None:
                unguarded.append(f"{service} {method} {path}")
            elif (service, method, path) not in ALLOW_LIST:
                unlisted.append(f"{service} {method} {path}: {open_write_reason(handler)}")

    assert not unguarded, f"writes without the token guard: {unguarded}"
    assert not unlisted, f"open writes missing from ALLOW_LIST (add them with a reason): {unlisted}"


def test_the_allow_list_names_only_open_writes_that_exist(apps: dict[str, Litestar]) -> None:
    open_writes = {
        (service, method, path)
        for service, app in apps.items()
        for method, path, handler in write_routes(app)
        if not _guarded(handler)
    }
    stale = sorted(set(ALLOW_LIST) - open_writes)
    assert not stale, f"ALLOW_LIST entries that are no open write (remove them): {stale}"
    assert all(reason.strip() for reason in ALLOW_LIST.values())


def test_every_app_guards_writes_by_default(apps: dict[str, Litestar]) -> None:
    for service, app in apps.items():
        assert any(isinstance(m, WriteTokenMiddleware) for m in app.middleware), (
            f"{service} was not built by the kit"
        )


def _concrete(path: str) -> str:
    """A request path for a route template: each parameter filled with a sample value."""
    parts = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            parts.append("1" if part[1:-1].partition(":")[2] == "int" else "x")
        else:
            parts.append(part)
    return "/".join(parts)


async def test_without_the_token_guarded_writes_answer_401_and_open_ones_do_not(
    apps: dict[str, Litestar],
) -> None:
    wrong: list[str] = []
    for service, app in apps.items():
        transport = httpx.ASGITransport(app=cast(Any, app))
        async with httpx.AsyncClient(transport=transport, base_url="http://pas") as client:
            for method, path, _handler in write_routes(app):
                # Not JSON: a request the guard lets through stops at decoding, never runs.
                response = await client.request(
                    method,
                    _concrete(path),
                    content=b"not json",
                    headers={"content-type": "application/json"},
                )
                refused = response.status_code == 401
                if refused == ((service, method, path) in ALLOW_LIST):
                    wrong.append(f"{service} {method} {path}: {response.status_code}")
    assert not wrong, f"answered otherwise than their guard says: {wrong}"
