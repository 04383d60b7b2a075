"""Bad requests get a 4xx problem body that names what was wrong; writes need the token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"n": value}
    return value


NESTED_100 = _nested(100)


async def _problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail: str = response.json()["detail"]
    return detail


@pytest.mark.parametrize(
    ("workflow_id", "body", "named"),
    [
        ("document_analysis", {"input": {}}, "content"),
        ("document_analysis", {"input": {"content": ""}}, "content"),
        ("document_analysis", {"input": {"content": "x", "colour": "red"}}, "colour"),
        ("network", {"input": {"ticker": "NVDA", "side": "hold", "quantity": 5}}, "side"),
        ("network", {"input": {"ticker": "NVDA", "side": "buy", "quantity": 0}}, "quantity"),
        ("network", {"input": {"ticker": "ZZZZ", "side": "buy", "quantity": 5}}, "ZZZZ"),
        ("supervisor", {"input": {"question": "q", "tickers": []}}, "tickers"),
        ("supervisor", {"input": {"question": "q", "tickers": ["AAPL"], "days": 99}}, "days"),
        ("orchestrator_worker", {"input": {"task": "t", "max_workers": 9}}, "max_workers"),
        ("tool_agent", {"input": {"question": 42}}, "question"),
        ("document_analysis", {"input": {"content": "x" * 200_001}}, "content"),
        ("document_analysis", {"input": {"content": "x"}, "run_id": "a b"}, "run_id"),
        ("document_analysis", {"input": {"content": "x"}, "surprise": 1}, "surprise"),
        (
            "document_analysis",
            {"input": {"content": "x"}, "metadata": {"n": "x" * 70_000}},
            "metadata",
        ),
        ("document_analysis", {"input": {"content": "x"}, "metadata": NESTED_100}, "metadata"),
        # PostgreSQL's JSONB holds no U+0000: a 500 there, refused on every store alike.
        ("document_analysis", {"input": {"content": "a\u0000b"}}, "input"),
        (
            "document_analysis",
            {"input": {"content": "x"}, "metadata": {"k": ["\u0000"]}},
            "metadata",
        ),
        # Path segments a client resolves away: the run's URLs would name another resource.
        ("document_analysis", {"input": {"content": "x"}, "run_id": ".."}, "run_id"),
        ("document_analysis", {"input": {"content": "x"}, "run_id": "."}, "run_id"),
        (
            "document_analysis",
            {"input": {"content": "x"}, "parameters": {"temperature": 5}},
            "temperature",
        ),
        # Taken until 2026-12-07 and passed on to the LLM calls, which it asks nothing.
        (
            "document_analysis",
            {"input": {"content": "x"}, "parameters": {"stop": ["</answer>", ""]}},
            "parameters.stop[1]",
        ),
    ],
)
async def test_invalid_run_requests_are_refused_naming_the_field(
    runner: AsyncTestClient[Any], workflow_id: str, body: dict[str, Any], named: str
) -> None:
    response = await runner.post(f"/workflows/{workflow_id}/runs", json=body)

    assert named in await _problem(response, 400)
    assert (await runner.get("/runs")).json()["runs"] == []  # nothing was started


async def test_a_body_nested_too_deep_to_read_is_a_400(runner: AsyncTestClient[Any]) -> None:
    """Thousands of levels fail Litestar's decoding with a RecursionError: it was a 500."""
    body = '{"input": {"content": "x"}, "metadata": {"n": ' + "[" * 3000 + "]" * 3000 + "}}"

    response = await runner.post(
        "/workflows/document_analysis/runs",
        content=body.encode(),
        headers={"content-type": "application/json"},
    )

    assert "nested too deep" in await _problem(response, 400)


async def test_malformed_json_and_unknown_ids(runner: AsyncTestClient[Any]) -> None:
    malformed = await runner.post(
        "/workflows/probe/runs", content=b"{not json", headers={"content-type": "application/json"}
    )
    unknown_workflow = await runner.post("/workflows/nope/runs", json={"input": {}})
    bad_workflow_id = await runner.post("/workflows/Bad-Id!/runs", json={"input": {}})
    unknown_run = await runner.get("/runs/0123456789abcdef")
    unknown_stream = await runner.get("/runs/0123456789abcdef/stream")
    unknown_resume = await runner.post("/runs/0123456789abcdef/resume")
    unknown_cancel = await runner.post("/runs/0123456789abcdef/cancel")

    assert "not valid JSON" in await _problem(malformed, 400)
    assert "nope" in await _problem(unknown_workflow, 404)
    assert "workflow_id" in await _problem(bad_workflow_id, 400)
    for response in (unknown_run, unknown_stream, unknown_resume, unknown_cancel):
        assert "0123456789abcdef" in await _problem(response, 404)


async def test_bad_query_parameters(runner: AsyncTestClient[Any]) -> None:
    assert "limit" in await _problem(await runner.get("/runs?limit=0"), 400)
    assert "status" in await _problem(await runner.get("/runs?status=finished"), 400)
    wait = await runner.post("/workflows/probe/runs?wait=perhaps", json={"input": {"log": "x"}})
    assert "wait" in await _problem(wait, 400)


async def test_resume_and_cancel_refuse_runs_in_the_wrong_state(
    runner: AsyncTestClient[Any], tmp_path: Path
) -> None:
    done = (
        await runner.post(
            "/workflows/probe/runs?wait=true", json={"input": {"log": str(tmp_path / "log")}}
        )
    ).json()

    resume = await runner.post(f"/runs/{done['run_id']}/resume", json={"resume": True})
    cancel = await runner.post(f"/runs/{done['run_id']}/cancel")
    unknown_field = await runner.post(f"/runs/{done['run_id']}/resume", json={"answer": 1})

    assert "success" in await _problem(resume, 409)
    assert "success" in await _problem(cancel, 409)
    assert "answer" in await _problem(unknown_field, 400)


async def test_with_a_token_writes_need_it_and_reads_do_not(
    make_runner: Any, tmp_path: Path
) -> None:
    runner = await make_runner(token="s3cret-token")
    body = {"input": {"log": str(tmp_path / "log")}}

    anonymous = await runner.post("/workflows/probe/runs", json=body)
    wrong = await runner.post(
        "/workflows/probe/runs", json=body, headers={"Authorization": "Bearer nope"}
    )
    allowed = await runner.post(
        "/workflows/probe/runs?wait=true",
        json=body,
        headers={"Authorization": "Bearer s3cret-token"},
    )
    run_id = allowed.json()["run_id"]

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert allowed.status_code == 200
    assert (await runner.get(f"/runs/{run_id}")).status_code == 200
    assert (await runner.get("/workflows")).status_code == 200
    assert (await runner.post(f"/runs/{run_id}/cancel")).status_code == 401
    assert (await runner.post(f"/runs/{run_id}/resume")).status_code == 401
