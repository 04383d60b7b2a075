"""Bad input gets a 4xx problem body that says which field was wrong and why."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies
from litestar.testing import AsyncTestClient

from libs.common.schemas.agents import ENDPOINT_PATTERN
from tests.conftest import agent_json

Client = AsyncTestClient[Any]


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_missing_field_is_named(registry: Client) -> None:
    definition = agent_json()
    del definition["endpoint"]

    body = problem(await registry.post("/register", json=definition), 400)

    assert body["errors"] == [{"field": "endpoint", "message": "field required", "source": "body"}]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("tier", "two", "Expected `int`, got `str`"),
        ("tier", 42, "Expected `int` <= 9"),
        ("capabilities", "reasoning", "Expected `array`, got `str`"),
        ("endpoint", "localhost:8050", "Expected `str` matching regex"),
        ("transport", "pigeon", "Invalid enum value"),
        ("cost_per_1k_tokens", -1, "Expected `float` >= 0.0"),
        ("agent_id", "", "Expected `str` of length >= 1"),
        # Python's `$` also matches before a final newline (taken until 2026-12-06).
        ("agent_id", "llm_llama31_8b\n", "Expected `str` matching regex"),
        ("role", "execution\n", "Expected `str` matching regex"),
    ],
)
async def test_wrong_values_are_named_with_the_problem(
    registry: Client, field: str, value: Any, expected: str
) -> None:
    body = problem(await registry.post("/register", json=agent_json(**{field: value})), 400)

    assert body["errors"][0]["field"] == field
    assert body["errors"][0]["message"].startswith(expected.split("`", maxsplit=1)[0])
    assert field in body["detail"]


@pytest.mark.parametrize(
    "endpoint",
    [
        # Each was taken and made every active check of the round fail (until 2026-12-06):
        # httpx cannot call them.
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://localhost:8050\nfoo bar",
        "http://localhost:8050\n",
        "https://0WSs.:Nu\u00e0",
        "grpc://host\u008f",
        "http://999.1.1.1:80",
        "http://[:::::]:80",
    ],
)
async def test_an_endpoint_that_cannot_be_called_is_refused(
    registry: Client, endpoint: str
) -> None:
    body = problem(await registry.post("/register", json=agent_json(endpoint=endpoint)), 400)

    assert body["errors"][0]["field"] == "endpoint"
    assert (await registry.get("/agents/llm_llama31_8b")).status_code == 404


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://localhost:8050",
        "https://llm.desk.example/v1/chat?model=a b",
        "http://user:secret@10.0.0.7:65535",
        "http://[::1]:8050/",
        "kafka://broker-1:9092",
        "grpc://[2001:db8::7]:50051",
    ],
)
async def test_endpoints_httpx_can_call_are_taken(registry: Client, endpoint: str) -> None:
    response = await registry.post("/register", json=agent_json(endpoint=endpoint))

    assert response.status_code == 200, response.text
    assert response.json()["endpoint"] == endpoint


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(endpoint=strategies.from_regex(ENDPOINT_PATTERN))
def test_every_endpoint_the_schema_takes_httpx_can_call(endpoint: str) -> None:
    """What the published pattern takes (schemathesis generates from it), httpx can call."""
    url = httpx.URL(endpoint)

    assert url.host
    assert url.port is None or 1 <= url.port <= 65_535


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # PostgreSQL's JSONB cannot hold U+0000: a 500 there until 2026-12-06.
        ({"name": "Llama\u0000"}, "name"),
        ({"metadata": {"note": "a\u0000b"}}, "metadata.note"),
        ({"metadata": {"tags": ["fx", {"desk": "\u0000"}]}}, "metadata.tags[1].desk"),
        ({"metadata": {"a\u0000": 1}}, "metadata.a\\u0000"),
    ],
)
async def test_a_nul_character_is_refused_on_every_store(
    registry: Client, change: dict[str, Any], field: str
) -> None:
    body = problem(await registry.post("/register", json=agent_json(**change)), 400)

    assert body["errors"][0]["field"] == field
    assert field in body["detail"]
    assert (await registry.get("/agents/llm_llama31_8b")).status_code == 404


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


async def test_metadata_nested_too_deep_is_a_400_naming_it(registry: Client) -> None:
    """Metadata Litestar reads (hundreds of levels) overflowed the stack of the recursive
    search for U+0000: a 500, and no agent."""
    deep = agent_json(metadata={"plan": _nested(800)})

    body = problem(await registry.post("/register", json=deep), 400)

    assert body["errors"][0]["field"] == "metadata"
    assert "nested deeper than 64 levels" in body["detail"]
    assert (await registry.get("/agents/llm_llama31_8b")).status_code == 404


async def test_metadata_as_deep_as_allowed_is_kept(registry: Client) -> None:
    kept = {"plan": _nested(63)}  # with the object holding it: 64 levels

    response = await registry.post("/register", json=agent_json(metadata=kept))

    assert response.status_code == 200, response.text
    assert (await registry.get("/agents/llm_llama31_8b")).json()["metadata"] == kept


async def test_nested_errors_give_the_path(registry: Client) -> None:
    body = problem(
        await registry.post("/register", json=agent_json(capabilities=["reasoning", 7])), 400
    )
    assert body["errors"][0]["field"] == "capabilities[1]"


async def test_unknown_fields_are_refused(registry: Client) -> None:
    body = problem(await registry.post("/discover", json={"capabilites": ["typo"]}), 400)
    assert "capabilites" in body["detail"]


async def test_malformed_json_is_a_400(registry: Client) -> None:
    body = problem(
        await registry.post(
            "/register", content=b'{"agent_id": ', headers={"content-type": "application/json"}
        ),
        400,
    )
    assert body["detail"].startswith("request body is not valid JSON")


async def test_oversized_body_is_a_413(make_registry: Any) -> None:
    registry = await make_registry(max_body_bytes=4096)
    big = agent_json(metadata={"padding": "x" * 10_000})

    body = problem(await registry.post("/register", json=big), 413)

    assert "4096" in body["detail"]
    assert (await registry.get("/agents")).json()["agents"] == []


async def test_bad_query_parameters(registry: Client) -> None:
    assert "wait" in problem(await registry.get("/agents?index=0&wait=soon"), 400)["detail"]
    assert "index" in problem(await registry.get("/agents?index=-1"), 400)["detail"]
    assert (
        "ttl" in problem(await registry.post("/register?ttl=2d", json=agent_json()), 400)["detail"]
    )


async def test_malformed_agent_id_in_the_path_is_a_400_not_a_404(registry: Client) -> None:
    for method in ("get", "delete"):
        body = problem(await getattr(registry, method)("/agents/-starts-with-a-dash"), 400)
        assert "agent_id" in body["detail"]
    body = problem(await registry.post("/agents/has%20space/heartbeat"), 400)
    assert "agent_id" in body["detail"]


async def test_unknown_route_is_a_problem_too(registry: Client) -> None:
    response = await registry.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json()["status"] == 404


async def test_a_trailing_newline_in_a_path_or_query_is_refused(registry: Client) -> None:
    await registry.post("/register", json=agent_json())

    problem(await registry.get("/agents/llm_llama31_8b%0A"), 400)
    problem(await registry.post("/agents/llm_llama31_8b%0A/heartbeat"), 400)
    problem(await registry.post("/register?ttl=30s%0A", json=agent_json()), 400)
    # Python's \d takes any script's digits; the published schema's (ECMA) only 0-9.
    problem(await registry.get("/agents?index=1&wait=%D9%A3s"), 400)
