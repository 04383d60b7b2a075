"""Quality scores over ``POST /events``: one per answer and measure (a re-sent score replaces
the stored one), reported per workflow version and model on either store; bad scores are a
400 that names the field."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.analytics.conftest import CollectorFactory, utc_now


def score(at: datetime, run_id: str, value: float, **fields: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workflow_id": "kafka_llm_processor.key_figures",
        "workflow_version": 1,
        "model": "smollm2",
        "metric": "key_figures_f1",
        "value": value,
        "timestamp": at.isoformat(),
        **fields,
    }


async def test_scores_are_reported_per_version_and_model(make_collector: CollectorFactory) -> None:
    collector = await make_collector()
    now = utc_now() - timedelta(minutes=5)
    batch = [
        score(now, "eval-a/d1/key_figures", 0.5),
        score(now, "eval-a/d2/key_figures", 1.0),
        score(now, "eval-a/d2/key_figures", 0.0, metric="grounded"),
        score(now, "eval-b/d1/key_figures", 0.25, workflow_version=2),
        score(now, "eval-b/d2/key_figures", 0.75, workflow_version=2),
        score(now, "eval-c/d1/key_figures", 1.0, workflow_version=None, model="other"),
        score(now, "eval-d/d1/sentiment", 1.0, workflow_id="kafka_llm_processor.sentiment"),
    ]
    stored = await collector.post("/events", json={"scores": batch})
    # Evaluated again: the later score of the same answer and measure replaces the first.
    again = await collector.post(
        "/events", json={"scores": [score(now, "eval-a/d1/key_figures", 0.0)]}
    )
    report = await collector.get(
        "/analytics/scores", params={"workflow_id": "kafka_llm_processor.key_figures"}
    )

    assert stored.status_code == 200, stored.text
    assert stored.json() == {"received": 7, "stored": 7, "duplicates": 0}
    assert again.json()["stored"] == 1
    assert report.status_code == 200, report.text
    lines = {
        (line["workflow_version"], line["model"], line["metric"]): (line["count"], line["mean"])
        for line in report.json()["scores"]
    }
    assert lines == {
        (None, "other", "key_figures_f1"): (1, 1.0),
        (1, "smollm2", "grounded"): (1, 0.0),
        (1, "smollm2", "key_figures_f1"): (2, 0.5),
        (2, "smollm2", "key_figures_f1"): (2, 0.5),
    }
    everything = (await collector.get("/analytics/scores")).json()["scores"]
    assert {line["workflow_id"] for line in everything} == {
        "kafka_llm_processor.key_figures",
        "kafka_llm_processor.sentiment",
    }


async def test_a_bad_score_is_refused_with_its_field(make_collector: CollectorFactory) -> None:
    collector = await make_collector()
    now = utc_now()
    for bad, field in (
        (score(now, "r1", 0.5, metric="F1 score!"), "metric"),
        # A name and a line break: Python's "$" matched before it, a second group of scores.
        (score(now, "r1", 0.5, metric="key_figures_f1\n"), "metric"),
        (score(now, "r1", 0.5, workflow_version=0), "workflow_version"),
        # More than the stores' INTEGER column holds (PostgreSQL refused it with a 500).
        (score(now, "r1", 0.5, workflow_version=2**31), "workflow_version"),
        ({k: v for k, v in score(now, "r1", 0.5).items() if k != "model"}, "model"),
    ):
        response = await collector.post("/events", json={"scores": [bad]})
        assert response.status_code == 400, response.text
        assert field in response.text
    report = (await collector.get("/analytics/scores")).json()
    assert report["scores"] == []
