"""The Kafka bridge on a real broker: a ``workflow.triggered`` event runs once and yields one
``workflow.completed`` (or ``.failed``) with its ids; what cannot run goes to the DLQ with the
reason; a duplicate, or a redelivery after a crash, does not run twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from libs.common.schemas.documents import DeadLetter
from libs.common.schemas.workflows import WorkflowResult
from tests.langgraph_runner.conftest import (
    Received,
    Topics,
    as_message,
    collect,
    events_counted,
    send,
    trigger,
    wait_for_run,
    wait_until,
)
from tests.langgraph_runner.probes import count
from tests.langgraph_runner.test_workflows import DOCUMENT
from tests.support.polling import poll_async
from tests.support.processes import ServiceProcess, free_port
from tests.support.unreadable_records import RawRecord, send_one_batch


def results_for(found: list[Received], event_id: str) -> list[WorkflowResult]:
    return [
        msgspec.convert(r.value, WorkflowResult, strict=False)
        for r in found
        if r.value.get("event_id") == event_id
    ]


async def settle(bootstrap: str, topic: str) -> list[Received]:
    """What the topic holds once the runner has had time to publish anything extra."""
    return await collect(bootstrap, topic, lambda _: False, timeout_s=3)


async def test_a_triggered_event_yields_one_completed_result_with_its_ids(
    make_runner: Any, kafka_bootstrap: str, topics: Topics, llm_process: ServiceProcess
) -> None:
    await make_runner(
        llm_url=llm_process.url, bootstrap_servers=kafka_bootstrap, **topics.settings()
    )
    event = trigger("document_analysis", DOCUMENT)

    await send(kafka_bootstrap, topics.events, [as_message(event)])
    await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1)
    found = await settle(kafka_bootstrap, topics.results)
    letters = await collect(kafka_bootstrap, topics.dlq, lambda _: False, timeout_s=0.5)

    [result] = results_for(found, event["event_id"])
    assert len(found) == 1
    assert found[0].key == event["workflow_run_id"]
    assert result.event_type == "workflow.completed"
    assert result.workflow_run_id == event["workflow_run_id"]
    assert result.workflow_id == "document_analysis"
    assert result.source == "langgraph_runner"
    assert result.metadata["environment"] == "dev"
    outcome = result.payload
    assert outcome.status == "success"
    assert outcome.error is None
    assert outcome.output is not None
    assert outcome.output["sentiment"] in {"positive", "neutral", "negative"}
    # analyse, structure; twice when the first analysis was not grounded in the document.
    asks = outcome.usage.calls
    assert asks in (1, 2)
    assert outcome.steps == 2 * asks
    assert asks == 2 or outcome.output["status"] == "ok"
    assert outcome.duration_ms > 0
    assert letters == []


async def test_invalid_events_land_in_the_dlq_with_the_reason(
    make_runner: Any, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await make_runner(
        bootstrap_servers=kafka_bootstrap, max_event_bytes=100_000, **topics.settings()
    )
    valid = trigger("probe", {"log": str(tmp_path / "probe.log")})
    missing_id = trigger("probe", {"log": "x"})
    del missing_id["workflow_run_id"]
    poison = [
        (b"not-json", b"{this is not json"),
        (b"missing-field", msgspec.json.encode(missing_id)),
        (b"wrong-type", msgspec.json.encode(trigger("probe", {}, event_type="workflow.completed"))),
        (b"unknown-workflow", msgspec.json.encode(trigger("no_such_flow", {}))),
        (b"bad-input", msgspec.json.encode(trigger("probe", {"log": 42}))),
        (b"too-large", msgspec.json.encode(trigger("probe", {"log": "x" * 100_000}))),
        (b"tombstone", None),
        # Nested past the decoder's depth (a RecursionError, not a DecodeError).
        (
            b"too-deep",
            msgspec.json.encode(trigger("probe", {"log": "x", "deep": "@"})).replace(
                b'"@"', b"[" * 45_000 + b"]" * 45_000
            ),
        ),
        # Metadata travels with the outcome: near a record's size it could never be published.
        (
            b"large-metadata",
            msgspec.json.encode(trigger("probe", {"log": "x"}, metadata={"n": "x" * 70_000})),
        ),
    ]

    await send(kafka_bootstrap, topics.events, [*poison, as_message(valid)])
    letters = await collect(kafka_bootstrap, topics.dlq, lambda found: len(found) >= len(poison))
    found = await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1)

    by_key = {
        letter.key: msgspec.convert(letter.value, DeadLetter, strict=False) for letter in letters
    }
    assert set(by_key) == {key.decode() for key, _ in poison}
    assert by_key["not-json"].error_type == "not_json"
    assert by_key["not-json"].original == "{this is not json"
    assert by_key["missing-field"].error_type == "invalid_event"
    assert "workflow_run_id" in by_key["missing-field"].error
    assert by_key["wrong-type"].error_type == "unsupported_event_type"
    assert "workflow.completed" in by_key["wrong-type"].error
    assert by_key["unknown-workflow"].error_type == "unknown_workflow"
    assert "no_such_flow" in by_key["unknown-workflow"].error
    assert by_key["bad-input"].error_type == "invalid_input"
    assert "log" in by_key["bad-input"].error
    assert by_key["too-large"].error_type == "too_large"
    # As the shared dead letter calls it (its error type was `empty` until 2026-12-07).
    assert by_key["tombstone"].error_type == "tombstone"
    assert by_key["tombstone"].tombstone
    assert by_key["too-deep"].error_type == "invalid_event"
    assert "nested too deep to read" in by_key["too-deep"].error
    assert by_key["large-metadata"].error_type == "invalid_input"
    assert "metadata" in by_key["large-metadata"].error
    assert all(letter.topic == topics.events for letter in by_key.values())
    # Refused before a run was started: none was tried.
    assert all(letter.attempts == 0 for letter in by_key.values())
    # Processing goes on after poison.
    [result] = results_for(found, valid["event_id"])
    assert result.event_type == "workflow.completed"


async def test_a_duplicate_event_runs_once(
    kafka_runner: AsyncTestClient[Any],
    make_runner: Callable[..., Any],
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
) -> None:
    """Also without the version manager: a run's definition comes from it, but a duplicate's
    run is known. It was asked all the same (until 2026-12-07), and while it was away a
    duplicate waited in its slot, tried again and again, for an answer the store had."""
    log = tmp_path / "probe.log"
    event = trigger("probe", {"log": str(log), "value": "once"})

    await send(kafka_bootstrap, topics.events, [as_message(event), as_message(event)])
    await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1)
    await send(kafka_bootstrap, topics.events, [as_message(event)])  # again, after it finished
    found = await settle(kafka_bootstrap, topics.results)

    [result] = results_for(found, event["event_id"])
    assert len(found) == 1
    assert result.payload.output == {"visited": ["a", "b", "c"], "value": "once"}
    assert count(log, "a", "start") == 1
    runs = (await kafka_runner.get("/runs?workflow_id=probe")).json()["runs"]
    assert [r["event_id"] for r in runs] == [event["event_id"]]

    # A replica on the same store whose version manager nobody serves, in a group of its own:
    # it reads the three copies again from the start of the topic.
    replica = await make_runner(
        bootstrap_servers=kafka_bootstrap,
        **{**topics.settings(), "group_id": f"replica-{topics.events}"},
        versioning_url=f"http://127.0.0.1:{free_port()}",
        instance="replica",
    )
    duplicates = await poll_async(
        lambda: events_counted(replica, "duplicate"), until=lambda n: n >= 3
    )
    assert duplicates == 3
    assert await events_counted(replica, "retried") == 0
    assert count(log, "a", "start") == 1


async def test_a_failing_workflow_is_published_as_failed(
    kafka_runner: AsyncTestClient[Any], kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    event = trigger("probe", {"log": str(tmp_path / "probe.log"), "broken": str(broken)})

    await send(kafka_bootstrap, topics.events, [as_message(event)])
    found = await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1)

    [result] = results_for(found, event["event_id"])
    assert result.event_type == "workflow.failed"
    assert result.workflow_run_id == event["workflow_run_id"]
    assert result.payload.status == "error"
    assert result.payload.error is not None
    assert "ValueError" in result.payload.error
    assert result.payload.output is None


async def test_an_outcome_too_large_for_a_record_goes_out_without_its_output(
    make_runner: Any, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """The probe echoes its ``value`` in its output: one larger than ``max_result_bytes``
    makes an event too large for a record. It goes out without the output, which the run
    keeps; the outcome reported with it is whole."""
    kafka_runner = await make_runner(
        bootstrap_servers=kafka_bootstrap, max_result_bytes=4096, **topics.settings()
    )
    log = str(tmp_path / "probe.log")
    large = "x" * 5000

    big = await kafka_runner.post(
        "/workflows/probe/runs?wait=true", json={"input": {"log": log, "value": large}}
    )
    small = await kafka_runner.post(
        "/workflows/probe/runs?wait=true", json={"input": {"log": log, "value": 1}}
    )
    found = await collect(kafka_bootstrap, topics.results, lambda got: len(got) >= 2, timeout_s=20)
    kept = await kafka_runner.get(f"/runs/{big.json()['run_id']}")

    published = {
        result.payload.run_id: result.payload
        for result in (msgspec.convert(r.value, WorkflowResult, strict=False) for r in found)
    }
    assert big.json()["status"] == small.json()["status"] == "success"
    assert set(published) == {big.json()["run_id"], small.json()["run_id"]}
    slim = published[big.json()["run_id"]]
    assert slim.status == "success"
    assert slim.output is None
    assert slim.omitted_output_bytes == len(msgspec.json.encode(big.json()["output"]))
    assert kept.json()["output"]["value"] == large
    whole = published[small.json()["run_id"]]
    assert whole.output == {"visited": ["a", "b", "c"], "value": 1}
    assert whole.omitted_output_bytes is None


async def test_an_interrupted_run_publishes_when_a_person_resumes_it(
    make_runner: Any, kafka_bootstrap: str, topics: Topics, llm_process: ServiceProcess
) -> None:
    runner = await make_runner(
        llm_url=llm_process.url, bootstrap_servers=kafka_bootstrap, **topics.settings()
    )
    event = trigger("network", {"ticker": "NVDA", "side": "buy", "quantity": 50_000})

    await send(kafka_bootstrap, topics.events, [as_message(event)])
    [run] = await _runs_of_event(runner, event["event_id"])
    paused = await wait_for_run(runner, run["run_id"])
    nothing_yet = await collect(kafka_bootstrap, topics.results, lambda _: False, timeout_s=1)
    await runner.post(
        f"/runs/{run['run_id']}/resume",
        json={"resume": {"approved": False, "reviewer": "desk head"}},
    )
    found = await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1)

    assert paused["status"] == "interrupted"
    assert paused["event_id"] == event["event_id"]
    assert nothing_yet == []
    [result] = results_for(found, event["event_id"])
    assert result.event_type == "workflow.completed"
    assert result.payload.output is not None
    assert result.payload.output["decision"] == "rejected"
    # The second it waited for its answer (at least, while nothing_yet was collected) is no
    # part of how long it ran (it was until 2026-12-07: finished_at - started_at).
    outcome = result.payload
    assert outcome.started_at is not None
    first_start_to_end_ms = (outcome.finished_at - outcome.started_at).total_seconds() * 1000
    assert 0 < outcome.duration_ms <= first_start_to_end_ms - 1000
    finished = (await runner.get(f"/runs/{run['run_id']}")).json()
    assert outcome.duration_ms == round(finished["running_ms"], 1)


async def _runs_of_event(runner: AsyncTestClient[Any], event_id: str) -> list[dict[str, Any]]:
    """The runs an event started, once it has started one."""
    for _ in range(600):
        runs = (await runner.get("/runs")).json()["runs"]
        found = [r for r in runs if r["event_id"] == event_id]
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no run for event {event_id}")


async def test_a_runner_killed_mid_run_publishes_one_result_after_restart(
    runner_process_factory: Callable[..., ServiceProcess],
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
) -> None:
    log, gate = tmp_path / "probe.log", tmp_path / "gate"
    # A short session: the group gives the dead runner's partitions away sooner.
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RUNNER_SESSION_TIMEOUT_S": "6",
        **topics.env(),
    }
    first = runner_process_factory(**env)
    event = trigger("probe", {"log": str(log), "gate": str(gate)})

    await send(kafka_bootstrap, topics.events, [as_message(event)])
    await wait_until(lambda: count(log, "b", "start") == 1)
    first.kill()  # the event's offset was never committed: it will be delivered again
    gate.touch()
    second = runner_process_factory(**env)
    await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1)
    # The redelivered event finds the run the restart resumed, and waits for nothing more.
    await wait_until(lambda: "event seen before; not run again" in second.logs(), timeout_s=60)
    found = await settle(kafka_bootstrap, topics.results)

    [result] = results_for(found, event["event_id"])
    assert result.event_type == "workflow.completed"
    assert result.payload.output == {"visited": ["a", "b", "c"], "value": None}
    assert count(log, "a", "start") == 1  # completed before the crash: not run again
    assert count(log, "c", "start") == 1


async def test_an_event_with_a_header_name_not_utf8_is_dead_lettered_and_the_others_run(
    make_runner: Any, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """aiokafka cannot build a record whose header name is not UTF-8: the bridge stopped on
    it for good. It is dead-lettered with its coordinates; the events around it run."""
    await make_runner(bootstrap_servers=kafka_bootstrap, **topics.settings())
    before, unreadable, after, elsewhere = (
        trigger("probe", {"log": str(tmp_path / f"{name}.log")})
        for name in ("before", "unreadable", "after", "elsewhere")
    )
    batch = [
        RawRecord(*as_message(before)),
        RawRecord(*as_message(unreadable), [(b"\xfftraceparent", b"00-x")]),
        RawRecord(*as_message(after)),
    ]

    await send_one_batch(kafka_bootstrap, topics.events, 0, batch)
    await send(kafka_bootstrap, topics.events, [as_message(elsewhere)])
    found = await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 3)
    [letter] = await collect(kafka_bootstrap, topics.dlq, lambda found: len(found) >= 1)

    ran = {
        r.event_id for r in (msgspec.convert(f.value, WorkflowResult, strict=False) for f in found)
    }
    assert ran == {before["event_id"], after["event_id"], elsewhere["event_id"]}
    dead = msgspec.convert(letter.value, DeadLetter, strict=False)
    assert (dead.topic, dead.partition, dead.offset) == (topics.events, 0, 1)
    assert dead.error_type == "header_name_not_utf8"
    assert dead.error.startswith("record unreadable: header name not UTF-8")
    assert msgspec.json.decode(dead.original) == unreadable
    assert dead.headers == {"\ufffdtraceparent": "00-x"}
