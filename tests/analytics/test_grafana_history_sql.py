"""The Grafana history panels' SQL runs on the PostgreSQL store and returns the stored history.

Grafana's macros are expanded the way its PostgreSQL data source does; the panels read the
views the store creates. Runs when PAS_TEST_POSTGRES_DSN is set.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.analytics.conftest import NO_POSTGRES, POSTGRES_DSN, CollectorFactory, known_events
from tests.analytics.conftest import utc_now as now_utc
from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES)]

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "pas-analytics.json"


def history_panels() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["rawSql"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if "rawSql" in target
    ]


def expand_macros(sql: str, days: int) -> str:
    """What Grafana sends for a range of the last ``days`` days."""
    sql = re.sub(r"\$__timeGroupAlias\((\w+), '1d'\)", r"date_trunc('day', \1) AS time", sql)
    return re.sub(
        r"\$__timeFilter\((\w+)\)",
        rf"\1 BETWEEN now() - interval '{days} days' AND now()",
        sql,
    )


@pytest.mark.parametrize("collector_settings", ["postgres"], indirect=True)
async def test_every_history_panel_reads_rows_from_the_store(
    make_collector: CollectorFactory,
) -> None:
    import psycopg  # noqa: PLC0415

    collector: AsyncTestClient[Any] = await make_collector()
    now = now_utc()
    usage, runs = known_events(now, spread_h=48)
    await collector.post("/events", json={"usage": usage, "runs": runs})
    cutoff = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    await collector.post("/admin/rollup", params={"before": cutoff.isoformat()})
    panels = history_panels()

    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        answers = {
            title: await (await conn.execute(expand_macros(sql, 7))).fetchall()
            for title, sql in panels
        }
        cost = await conn.execute("SELECT sum(cost_usd)::float8 FROM pas_analytics_usage_by_hour")
        [(total_cost,)] = await cost.fetchall()
        counted = await conn.execute("SELECT sum(runs) FROM pas_analytics_runs_by_hour")
        [(total_runs,)] = await counted.fetchall()

    assert len(panels) >= 4
    assert all(answers.values()), [title for title, rows in answers.items() if not rows]
    assert total_cost == pytest.approx(sum(e["cost_usd"] for e in usage))
    assert total_runs == len(runs)
