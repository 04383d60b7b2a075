"""/metrics shows each candidate's circuit and each provider's spend against its budget: what
the alert rules on an open circuit and on a budget near its end read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.provider_router.conftest import ask, one_provider
from tests.support.asgi_server import serve_asgi
from tests.support.scripted_upstream import ScriptedUpstream

CANDIDATE = "flaky/flaky"


def _gauges(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every pas_router gauge's samples by their sorted labels."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        if family.type == "gauge" and family.name.startswith("pas_router_"):
            found[family.name] = {
                tuple(sorted(sample.labels.items())): sample.value for sample in family.samples
            }
    return found


def _circuit(gauges: dict[str, Any], state: str) -> float:
    labels = (("candidate", CANDIDATE), ("model", "flaky"), ("provider", "flaky"))
    value: float = gauges["pas_router_circuit_state"][(*labels, ("state", state))]
    return value


async def test_circuit_state_spend_and_budget_are_gauges(make_router: Any, tmp_path: Path) -> None:
    upstream = ScriptedUpstream("flaky", ["ok", 503, 503])
    with serve_asgi(upstream) as url:
        router = await make_router(
            use_registry=False,
            providers_file=one_provider(tmp_path, url, "flaky", "summarize", budget_usd=0.5),
            retries=0,
            breaker_failures=2,
            # Open for the whole test: the gauge is read while the cooldown runs.
            breaker_cooldown_s=600,
        )
        before = _gauges((await router.get("/metrics")).text)
        answered = await router.post("/v1/chat/completions", json=ask("summarize"))
        failed = [
            (await router.post("/v1/chat/completions", json=ask("summarize"))).status_code
            for _ in range(2)
        ]
        after = _gauges((await router.get("/metrics")).text)
        [row] = (await router.get("/providers")).json()["candidates"]

    assert answered.status_code == 200
    assert failed == [503, 503]
    assert row["circuit"] == "open"
    assert [_circuit(before, s) for s in ("closed", "open", "half_open")] == [1.0, 0.0, 0.0]
    assert [_circuit(after, s) for s in ("closed", "open", "half_open")] == [0.0, 1.0, 0.0]
    assert before["pas_router_spent_today_usd"] == {(("provider", "flaky"),): 0.0}
    assert after["pas_router_spent_today_usd"][(("provider", "flaky"),)] == row["spent_today_usd"]
    assert row["spent_today_usd"] > 0
    assert after["pas_router_daily_budget_usd"] == {(("provider", "flaky"),): 0.5}


async def test_a_provider_without_a_budget_has_spend_but_no_budget(
    make_router: Any, tmp_path: Path
) -> None:
    with serve_asgi(ScriptedUpstream("flaky", ["ok"])) as url:
        router = await make_router(
            use_registry=False,
            providers_file=one_provider(tmp_path, url, "flaky", "summarize"),
        )
        gauges = _gauges((await router.get("/metrics")).text)

    assert gauges["pas_router_spent_today_usd"] == {(("provider", "flaky"),): 0.0}
    assert gauges["pas_router_daily_budget_usd"] == {}
