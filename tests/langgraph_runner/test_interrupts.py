"""Human in the loop: a trade over its limits pauses the network for a person's decision; the
answer resumes it where it stopped."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

BIG_TRADE = {"ticker": "NVDA", "side": "buy", "quantity": 50_000, "desk": "tech"}


async def _interrupted(client: AsyncTestClient[Any]) -> dict[str, Any]:
    response = await client.post("/workflows/network/runs?wait=true", json={"input": BIG_TRADE})
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    assert run["status"] == "interrupted", run
    return run


async def test_a_breach_pauses_the_run_and_the_answer_finishes_it(
    llm_runner: AsyncTestClient[Any],
) -> None:
    paused = await _interrupted(llm_runner)

    [pending] = paused["interrupts"]
    assert pending["value"]["question"].startswith("Approve this trade")
    assert len(pending["value"]["breaches"]) == 2  # notional and VaR
    assert pending["value"]["trade"]["quantity"] == 50_000
    assert pending["response_schema"]["required"] == ["approved", "reviewer"]
    assert paused["path"] == ["compliance", "pricing", "risk", "compliance"]
    assert paused["finished_at"] is None
    assert paused["output"] is None

    resumed = await llm_runner.post(
        f"/runs/{paused['run_id']}/resume?wait=true",
        json={"resume": {"approved": True, "reviewer": "head of desk", "comment": "hedged"}},
    )

    assert resumed.status_code == 200
    run = resumed.json()
    assert run["status"] == "success", run["error"]
    assert run["interrupts"] == []
    assert run["attempts"] == 2
    output = run["output"]
    assert output["decision"] == "approved"
    assert output["review"] == {"approved": True, "reviewer": "head of desk", "comment": "hedged"}
    # Resumed at the review: the agents before it did not run again.
    assert output["handoffs"] == [
        "compliance",
        "pricing",
        "risk",
        "compliance",
        "human_review",
        "desk_note",
    ]
    assert run["path"] == output["handoffs"]


async def test_an_answer_of_the_wrong_shape_asks_again(llm_runner: AsyncTestClient[Any]) -> None:
    paused = await _interrupted(llm_runner)

    wrong = await llm_runner.post(
        f"/runs/{paused['run_id']}/resume?wait=true", json={"resume": "yes please"}
    )
    [asked_again] = wrong.json()["interrupts"]
    rejected = await llm_runner.post(
        f"/runs/{paused['run_id']}/resume?wait=true",
        json={
            "resume": {"approved": False, "reviewer": "risk officer"},
            "interrupt_id": asked_again["id"],
        },
    )

    assert wrong.json()["status"] == "interrupted"
    assert "not a review decision" in asked_again["value"]["problem"]
    assert rejected.json()["status"] == "success"
    assert rejected.json()["output"]["decision"] == "rejected"


async def test_resume_needs_an_answer_and_a_pending_interrupt_id(
    llm_runner: AsyncTestClient[Any],
) -> None:
    paused = await _interrupted(llm_runner)
    url = f"/runs/{paused['run_id']}/resume"

    no_answer = await llm_runner.post(url)
    # Both failed the run (LangGraph on a null resume, its checkpoint serializer on the depth).
    null_answer = await llm_runner.post(url, json={"resume": None})
    deep: Any = {"approved": True}
    for _ in range(300):
        deep = {"nested": deep}
    too_deep = await llm_runner.post(url, json={"resume": deep})
    still = (await llm_runner.get(f"/runs/{paused['run_id']}")).json()
    unknown_id = await llm_runner.post(url, json={"resume": {}, "interrupt_id": "nope"})
    cancelled = await llm_runner.post(f"/runs/{paused['run_id']}/cancel")

    assert no_answer.status_code == 400
    assert "answer" in no_answer.json()["detail"]
    assert null_answer.status_code == 400, null_answer.text
    assert "null" in null_answer.json()["detail"]
    assert too_deep.status_code == 400, too_deep.text
    assert "nested deeper than 64" in too_deep.json()["detail"]
    assert still["status"] == "interrupted"
    assert unknown_id.status_code == 400
    assert "nope" in unknown_id.json()["detail"]
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await llm_runner.post(url, json={"resume": {}})).status_code == 409
