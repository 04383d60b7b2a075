"""``pas costs`` on the real analytics service, fed usage events over its HTTP API."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from tests.cli.conftest import pas
from tests.support.processes import ServiceProcess


def usage(
    event_id: str, model: str, prompt: int, completion: int, cost: float, **more: object
) -> dict[str, object]:
    return {
        "event_id": event_id,
        "timestamp": datetime.now(UTC).isoformat(),
        "service": "provider_router",
        "provider": "local",
        "model": model,
        "status": "ok",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "latency_ms": 12.0,
        "cost_usd": cost,
        **more,
    }


def _cells(row: str) -> list[str]:
    """A table row's values, without rich's column rules."""
    return [cell for cell in row.split() if cell not in ("│", "┃")]


MODEL = "smollm2-135m-instruct"


def test_costs_per_model_as_a_table_and_as_json(
    start_analytics: Callable[[], ServiceProcess],
) -> None:
    analytics = start_analytics()
    batch = {
        "usage": [
            usage("u1", MODEL, 10, 5, 0.001, desk="rates", cached_tokens=4),
            usage(
                "u2",
                MODEL,
                20,
                5,
                0.002,
                desk="rates",
                cached_tokens=16,
                cache_write_tokens=3,
            ),
            usage("u3", "gpt-x", 100, 50, 0.5),
        ]
    }
    stored = httpx.post(f"{analytics.url}/events", json=batch)
    assert stored.status_code == 200, stored.text
    env = {"ANALYTICS_URL": analytics.url}

    # A terminal of 80 columns (a pipe's width): names and costs are not cut.
    table = pas("costs", env={**env, "COLUMNS": "80"})
    report = pas("costs", "--group-by", "model", "--json", env=env)
    desks = pas("costs", "--group-by", "desk", env=env)
    without_writes = pas("costs", "--to", "2026-01-01T00:00:00+00:00", env=env)

    assert table.returncode == 0, table.stderr
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    [smollm2] = [line for line in table.stdout.splitlines() if MODEL in line]
    # calls, prompt, of it cached, of it written to a provider's cache, output, cost
    assert _cells(smollm2)[-6:] == ["2", "30", "20", "3", "10", "0.003000"]
    [rates] = [line for line in desks.stdout.splitlines() if "rates" in line]
    assert _cells(rates)[-6:] == ["2", "30", "20", "3", "10", "0.003000"]
    assert "LLM costs by desk" in desks.stdout
    # No cache writes in that window: no column for them.
    assert "writes" in table.stdout
    assert "writes" not in without_writes.stdout
    assert report.returncode == 0, report.stderr
    body = json.loads(report.stdout)
    by_model = {line["key"]: line for line in body["groups"]}
    assert by_model[MODEL]["llm_calls"] == 2
    assert by_model["gpt-x"]["total_tokens"] == 150
    assert body["total"]["llm_calls"] == 3


def test_a_bad_window_is_the_services_own_answer(
    start_analytics: Callable[[], ServiceProcess],
) -> None:
    analytics = start_analytics()

    shown = pas("costs", "--from", "yesterday", env={"ANALYTICS_URL": analytics.url})

    assert shown.returncode == 1
    assert "analytics answered 400" in shown.stderr
