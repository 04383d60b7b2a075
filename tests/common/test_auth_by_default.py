"""A write route is guarded from the moment it exists; reads stay open; an open write says why.

And the token comes from the service's own variable, else the one shared by every service.
"""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest
from litestar import Litestar, delete, get, patch, post, put

from libs.common.kit import ServiceSettings, create_service, open_write
from libs.common.settings import load_settings
from services.llm.tlc_classifier_service import TLCSettings
from services.registry.settings import RegistrySettings

TOKEN = "kit-test-token"


@post("/orders", status_code=200)
async def place_order() -> dict[str, str]:
    return {"placed": "yes"}


@put("/orders/latest", status_code=200)
async def replace_order() -> dict[str, str]:
    return {"replaced": "latest"}


@patch("/orders/latest", status_code=200)
async def amend_order() -> dict[str, str]:
    return {"amended": "latest"}


@delete("/orders/latest", status_code=200)
async def cancel_order() -> dict[str, str]:
    return {"cancelled": "latest"}


@get("/orders")
async def list_orders() -> dict[str, list[str]]:
    return {"orders": []}


@post("/quote", status_code=200, opt=open_write("a price question: changes nothing"))
async def quote() -> dict[str, float]:
    return {"price": 1.0}


def _service(token: str | None) -> Litestar:
    return create_service(
        name="orders",
        settings=ServiceSettings(log_level="WARNING", token=token),
        route_handlers=[place_order, replace_order, amend_order, cancel_order, list_orders, quote],
    )


def _client(app: Litestar) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app)), base_url="http://t")


WRITES = [
    ("POST", "/orders"),
    ("PUT", "/orders/latest"),
    ("PATCH", "/orders/latest"),
    ("DELETE", "/orders/latest"),
]


async def test_a_new_write_route_needs_the_token_without_asking_for_it() -> None:
    async with _client(_service(TOKEN)) as client:
        for method, path in WRITES:
            anonymous = await client.request(method, path)
            wrong = await client.request(method, path, headers={"Authorization": "Bearer nope"})
            allowed = await client.request(
                method, path, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert (anonymous.status_code, wrong.status_code, allowed.status_code) == (
                401,
                401,
                200,
            ), f"{method} {path}"
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert anonymous.headers["content-type"].startswith("application/problem+json")
        assert (await client.get("/orders")).status_code == 200
        assert (await client.get("/health")).status_code == 200
        assert (await client.post("/quote")).status_code == 200, "declared open, with a reason"


async def test_without_a_token_on_loopback_writes_stay_open() -> None:
    async with _client(_service(None)) as client:
        for method, path in WRITES:
            assert (await client.request(method, path)).status_code == 200


def test_an_open_write_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="reason"):
        open_write("  ")


def test_the_service_token_wins_over_the_shared_one() -> None:
    shared = load_settings(RegistrySettings, {"PAS_TOKEN": "shared"}, env_file="")
    own = load_settings(
        RegistrySettings, {"PAS_TOKEN": "shared", "REGISTRY_TOKEN": "own"}, env_file=""
    )
    llm = load_settings(TLCSettings, {"PAS_TOKEN": "shared", "LLM_TOKEN": "llm"}, env_file="")
    tlc = load_settings(TLCSettings, {"LLM_TOKEN": "llm", "TLC_TOKEN": "tlc"}, env_file="")

    assert (shared.token, own.token, llm.token, tlc.token) == ("shared", "own", "llm", "tlc")
    # The LLM services send the registry's token; with only PAS_TOKEN set, that one.
    assert llm.registry_token == "shared"
