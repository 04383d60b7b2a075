"""Every shipped workflow, run over HTTP with the real embedded model (SmolLM2-135M behind a PAS
LLM service, reached by ChatOllama), ends in its documented result.

The model's wording is never asserted; shapes, routing, tool results and figures are, the
figures against the market-data file read and computed here independently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from litestar.testing import AsyncTestClient

from libs.common.clauses import clauses
from libs.common.grounded_text import max_chars
from libs.common.grounding import Source, unfounded_numbers
from services.langgraph_runner.market_data import SAMPLE_MARKET_DATA
from services.langgraph_runner.workflows.document_analysis import CLAUSE_CHARS, SUMMARY
from tests.support.processes import ServiceProcess

DOCUMENT = {
    "title": "Apple fourth quarter results",
    "doc_type": "earnings_report",
    "content": "Apple reported quarterly revenue of $94.9 billion, up 6 percent year over year, "
    "and diluted earnings per share of $1.64. iPhone revenue grew 6 percent and services "
    "reached an all-time high of $25 billion.",
}


def closes(ticker: str) -> tuple[list[str], np.ndarray]:
    data = json.loads(Path(SAMPLE_MARKET_DATA).read_text())
    return data["dates"], np.array(data["tickers"][ticker]["close"], dtype=float)


def expected_metrics(ticker: str, days: int) -> dict[str, Any]:
    dates, prices = closes(ticker)
    window = prices[-days:]
    log_returns = np.diff(np.log(window))
    running_peak = np.maximum.accumulate(window)
    return {
        "first_close": float(window[0]),
        "last_close": float(window[-1]),
        "total_return_pct": float((window[-1] / window[0] - 1) * 100),
        "annualized_volatility_pct": float(np.std(log_returns, ddof=1) * np.sqrt(252) * 100),
        "max_drawdown_pct": float(np.max(1 - window / running_peak) * 100),
        "start_date": dates[-days],
    }


async def run(client: AsyncTestClient[Any], workflow_id: str, payload: dict[str, Any]) -> Any:
    response = await client.post(
        f"/workflows/{workflow_id}/runs?wait=true", json={"input": payload}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_document_analysis_gives_a_structured_result(
    llm_runner: AsyncTestClient[Any],
) -> None:
    result = await run(llm_runner, "document_analysis", DOCUMENT)

    assert result["status"] == "success", result["error"]
    # The schema lets the texts write numbers only as the document writes them, so the first
    # answer is grounded: not asked again.
    assert result["path"] == ["analyse", "structure"]
    output = result["output"]
    source = Source.of(f"{DOCUMENT['title']}\n{DOCUMENT['content']}")
    for text in (output["summary"], *output["key_points"]):
        assert unfounded_numbers(text, source) == [], text
    assert output["ungrounded"] == []
    assert output["status"] == "ok"
    assert isinstance(output["summary"], str)
    assert 0 < len(output["summary"]) <= max_chars(**SUMMARY)
    assert output["sentiment"] in {"positive", "neutral", "negative"}
    # The key points are the document's clauses, from its first, in the document's order.
    offered = clauses(DOCUMENT["content"], max_chars=CLAUSE_CHARS)
    # Two at least: the document has two clauses.
    assert 2 <= len(output["key_points"]) <= 3
    assert set(output["key_points"]) <= set(offered), output["key_points"]
    assert output["key_points"][0] == offered[0]
    places = [offered.index(point) for point in output["key_points"]]
    assert places == sorted(set(places))
    assert output["word_count"] == len(DOCUMENT["content"].split())
    assert output["title"] == DOCUMENT["title"]
    assert result["usage"]["calls"] == 1
    assert result["usage"]["prompt_tokens"] > 0
    assert result["usage"]["completion_tokens"] > 0


async def test_at_temperature_zero_the_same_input_gives_the_same_output(
    llm_runner: AsyncTestClient[Any],
) -> None:
    first = await run(llm_runner, "document_analysis", DOCUMENT)
    second = await run(llm_runner, "document_analysis", DOCUMENT)

    assert first["run_id"] != second["run_id"]
    assert first["output"] == second["output"]


async def test_orchestrator_workers_run_in_parallel(llm_runner: AsyncTestClient[Any]) -> None:
    sections = ["Revenue", "Margins", "Outlook"]

    result = await run(
        llm_runner,
        "orchestrator_worker",
        {"task": "Brief the desk on Apple's fourth quarter", "sections": sections},
    )

    assert result["status"] == "success", result["error"]
    assert result["path"] == ["orchestrate", "worker", "worker", "worker", "assemble"]
    workers = result["output"]["workers"]
    assert [w["section"] for w in workers] == sections
    assert all(w["text"] for w in workers)
    # Measured, not assumed: every worker had started before the first one finished, so all
    # three were in flight at once.
    assert max(w["started_at"] for w in workers) < min(w["finished_at"] for w in workers)
    report = result["output"]["report"]
    assert [line for line in report.splitlines() if line.startswith("## ")] == [
        f"## {s}" for s in sections
    ]
    assert result["usage"]["calls"] == 3


async def test_the_orchestrator_plans_sections_with_the_model(
    llm_runner: AsyncTestClient[Any],
) -> None:
    result = await run(
        llm_runner,
        "orchestrator_worker",
        {"task": "Prepare a pre-market note on US bank stocks", "max_workers": 3},
    )

    assert result["status"] == "success", result["error"]
    sections = result["output"]["sections"]
    assert 1 <= len(sections) <= 3
    assert len(set(sections)) == len(sections)
    assert [w["section"] for w in result["output"]["workers"]] == sections
    assert result["path"].count("worker") == len(sections)
    assert result["usage"]["calls"] == 1 + len(sections)


async def test_the_supervisor_routes_until_it_decides_the_task_is_done(
    llm_runner: AsyncTestClient[Any],
) -> None:
    result = await run(
        llm_runner,
        "supervisor",
        {"question": "Is NVDA riskier than AAPL this month?", "tickers": ["nvda", "AAPL"]},
    )

    assert result["status"] == "success", result["error"]
    output = result["output"]
    route = output["route"]
    assert route, "the supervisor consults at least one specialist before finishing"
    assert len(set(route)) == len(route)
    assert set(route) <= {"quant", "risk", "analyst"}
    # Every hop goes through the supervisor, which also has the last word.
    expected_path = ["supervisor"]
    for specialist in route:
        expected_path += [specialist, "supervisor"]
    assert result["path"] == expected_path
    if "quant" in route:
        for ticker in ("NVDA", "AAPL"):
            figures = output["figures"][ticker]
            expected = expected_metrics(ticker, 20)
            assert figures["start_date"] == expected.pop("start_date")
            for name, value in expected.items():
                assert abs(figures[name] - value) < 1e-3, name
    else:
        assert output["figures"] is None
    if "risk" in route:
        volatility = expected_metrics("NVDA", 20)["annualized_volatility_pct"]
        assert any("volatility" in f for f in output["flags"]["NVDA"]) == (volatility > 35)
    assert ("analyst" in route) == (output["view"] is not None)
    assert output["brief"].startswith("Question: Is NVDA riskier than AAPL this month?")


async def test_the_network_hands_off_until_the_trade_is_checked(
    llm_runner: AsyncTestClient[Any],
) -> None:
    result = await run(llm_runner, "network", {"ticker": "NVDA", "side": "buy", "quantity": 1000})

    assert result["status"] == "success", result["error"]
    output = result["output"]
    # compliance needs a price, pricing hands on to risk, risk back to compliance.
    assert output["handoffs"] == ["compliance", "pricing", "risk", "compliance", "desk_note"]
    _, prices = closes("NVDA")
    notional = prices[-1] * 1000
    daily_volatility = np.std(np.diff(np.log(prices[-20:])), ddof=1)
    assert output["price"]["close"] == prices[-1]
    assert output["price"]["notional"] == round(notional, 2)
    assert abs(output["risk"]["var_99_1d"] - notional * daily_volatility * 2.326348) < 0.01
    assert output["breaches"] == []
    assert output["decision"] == "auto_approved"
    assert output["review"] is None
    assert output["note"]


async def test_the_network_can_start_at_any_agent(llm_runner: AsyncTestClient[Any]) -> None:
    result = await run(
        llm_runner,
        "network",
        {"ticker": "AAPL", "side": "sell", "quantity": 10, "first_agent": "risk"},
    )

    assert result["status"] == "success", result["error"]
    assert result["output"]["handoffs"] == ["risk", "pricing", "risk", "compliance", "desk_note"]


async def test_the_tool_agent_answers_from_real_tool_results(
    llm_runner: AsyncTestClient[Any],
) -> None:
    result = await run(
        llm_runner,
        "tool_agent",
        {"question": "How much did NVDA return and how volatile was it over the last 10 days?"},
    )

    assert result["status"] == "success", result["error"]
    assert result["path"] == ["agent", "tools", "agent"]
    calls = result["output"]["tool_calls"]
    assert 1 <= len(calls) <= 3
    for call in calls:
        assert call["status"] == "success", call["error"]
        ticker, days = call["args"]["ticker"], call["args"]["days"]
        if call["tool"] == "return_metrics":
            expected = expected_metrics(ticker, days)
            assert call["result"]["start_date"] == expected.pop("start_date")
            for name, value in expected.items():
                assert abs(call["result"][name] - value) < 1e-3, name
        else:
            assert call["tool"] == "price_history"
            ticker_dates, prices = closes(ticker)
            assert call["result"] == [
                {"date": d, "close": c}
                for d, c in zip(ticker_dates[-days:], prices[-days:].tolist(), strict=True)
            ]
    assert isinstance(result["output"]["answer"], str)
    assert result["output"]["answer"]
    assert result["usage"]["calls"] == 2


async def test_llm_nodes_can_go_through_an_openai_compatible_api(
    make_runner: Any, llm_process: ServiceProcess
) -> None:
    """The provider router's path: OpenAI's /v1/chat/completions with JSON-schema answers (the
    PAS LLM service speaks the same API the router does)."""
    runner = await make_runner(llm_api="openai", llm_url=f"{llm_process.url}/v1")

    result = await run(runner, "document_analysis", DOCUMENT)

    assert result["status"] == "success", result["error"]
    assert result["output"]["sentiment"] in {"positive", "neutral", "negative"}
    assert result["usage"]["prompt_tokens"] > 0


async def test_a_model_that_is_away_fails_the_run_after_its_retries(
    make_runner: Any,
) -> None:
    runner = await make_runner(node_max_attempts=2)

    result = await run(runner, "document_analysis", DOCUMENT)

    assert result["status"] == "error"
    assert "'analyse'" in result["error"]
    assert "ConnectError" in result["error"]
