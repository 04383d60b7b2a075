"""Every run of an A/B experiment becomes one outcome at a real version manager, whichever way
it was started (REST or ``workflow-events``), with what its LLM calls cost, and also when the
runner died between the run's end and the report."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.schemas.versioning import Experiment
from services.langgraph_runner.settings import ModelPrice
from tests.langgraph_runner.conftest import (
    RUNNER_APP,
    Topics,
    as_message,
    collect,
    events_counted,
    send,
    trigger,
    wait_for_run,
    wait_until,
)
from tests.langgraph_runner.probes import PROBE_REFERENCE, count
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import ANSWER, OpenAIResponder
from tests.support.polling import poll_async
from tests.support.processes import ServiceProcess, free_port
from tests.versioning.conftest import AUTHOR, definition_json, versioning_process_factory

__all__ = ["versioning_process_factory"]  # the fixture, imported for these tests

TOKEN = "versioning-secret"
WRITE = {"Authorization": f"Bearer {TOKEN}"}
PRICED_MODEL, INPUT_PER_1K, OUTPUT_PER_1K = "priced-model", 0.5, 1.5
PRICE = ModelPrice(model=PRICED_MODEL, input_per_1k=INPUT_PER_1K, output_per_1k=OUTPUT_PER_1K)
# What the responder's answer costs at PRICE: 11 prompt tokens, one completion token a word.
CALL_COST = (11 * INPUT_PER_1K + len(ANSWER) * OUTPUT_PER_1K) / 1000


async def start_experiment(url: str) -> Experiment:
    """Two versions of the probe and an even A/B test between them."""
    async with httpx.AsyncClient(base_url=url, headers=WRITE) as http:
        for model in ("model-one", "model-two"):
            response = await http.post(
                "/workflows/probe/versions",
                json={
                    "definition": definition_json("probe", model=model),
                    "author": AUTHOR,
                    "message": f"probe on {model}",
                },
            )
            assert response.status_code == 201, response.text
        response = await http.post(
            "/experiments",
            json={"workflow_id": "probe", "variants": {"A": 1, "B": 2}, "min_samples": 50},
        )
    assert response.status_code == 201, response.text
    return msgspec.json.decode(response.content, type=Experiment)


async def results(url: str, experiment: Experiment) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.get(f"/experiments/{experiment.id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["results"]
    return found


async def outcomes_once(url: str, experiment: Experiment, total: int) -> dict[str, Any]:
    """The experiment's results once ``total`` outcomes are counted."""
    for _ in range(300):
        found = await results(url, experiment)
        if found["total"] >= total:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{total} outcomes expected, the version manager counts {found}")


_OUTCOMES_TOTAL = re.compile(r"^pas_versioning_outcomes_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


async def outcome_metrics(url: str) -> dict[tuple[str, str], float]:
    """``pas_versioning_outcomes_total`` by (source, result)."""
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    found = {}
    for line in text.splitlines():
        if match := _OUTCOMES_TOTAL.match(line):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            found[labels["source"], labels["result"]] = float(match["value"])
    return found


def by_variant(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variant["variant"]: variant for variant in found["variants"]}


async def test_a_rest_run_in_an_experiment_is_one_outcome_with_its_score(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    versioning = versioning_process_factory(VERSIONING_TOKEN=TOKEN)
    experiment = await start_experiment(versioning.url)
    runner = await make_runner(versioning_url=versioning.url, versioning_token=TOKEN)
    variant = experiment.variant_for("desk-7")

    response = await runner.post(
        "/workflows/probe/runs?wait=true",
        json={
            "input": {"log": str(tmp_path / "probe.log"), "value": 0.75},
            "metadata": {"unit": "desk-7"},
        },
    )
    found = await outcomes_once(versioning.url, experiment, 1)

    run = response.json()
    assert run["status"] == "success"
    assert run["score"] == 0.75
    assert found["total"] == 1
    counted = by_variant(found)[variant]
    assert counted["count"] == 1
    assert counted["successes"] == 1
    assert counted["score_mean"] == 0.75
    assert counted["latency_mean_ms"] > 0
    assert await outcome_metrics(versioning.url) == {("rest", "recorded"): 1.0}


async def test_a_runner_that_died_before_reporting_reports_once_after_restart(
    versioning_process_factory: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    versioning = versioning_process_factory(VERSIONING_TOKEN=TOKEN)
    experiment = await start_experiment(versioning.url)
    log, gate = tmp_path / "probe.log", tmp_path / "gate"
    env = {
        "RUNNER_CHECKPOINT_PATH": str(tmp_path / "checkpoints.db"),
        "RUNNER_STORE_PATH": str(tmp_path / "runs.db"),
        "RUNNER_EXTRA_WORKFLOWS": PROBE_REFERENCE,
        "RUNNER_LLM_URL": f"http://127.0.0.1:{free_port()}",
        "RUNNER_OUTBOX_INTERVAL_S": "0.2",
        "VERSIONING_URL": versioning.url,
        "VERSIONING_TOKEN": TOKEN,
        "LOG_LEVEL": "INFO",
    }
    runner_port = free_port()

    def start_runner(name: str) -> ServiceProcess:
        return ServiceProcess(RUNNER_APP, runner_port, env, tmp_path / f"{name}.log").start()

    first = start_runner("runner-1")
    try:
        async with httpx.AsyncClient(base_url=first.url) as http:
            response = await http.post(
                "/workflows/probe/runs",
                json={"input": {"log": str(log), "gate": str(gate)}, "metadata": {"unit": "u-1"}},
            )
            assert response.status_code == 202, response.text
            run_id = response.json()["run_id"]
            await wait_until(lambda: count(log, "b", "start") == 1)
            # The version manager goes away; the run ends while it is away.
            versioning.stop()
            gate.touch()
            ended = await wait_for_run(http, run_id)
    finally:
        first.kill()  # died with the outcome unreported
    versioning = versioning_process_factory(port=versioning.port, VERSIONING_TOKEN=TOKEN)
    second = start_runner("runner-2")
    found = await outcomes_once(versioning.url, experiment, 1)
    await wait_until(lambda: "outcome reported" in second.logs(), timeout_s=60)
    # Restarted again: what was reported is not reported again. A second run is reported after
    # anything the restart would have sent again.
    second.kill()
    third = start_runner("runner-3")
    async with httpx.AsyncClient(base_url=third.url) as http:
        response = await http.post(
            "/workflows/probe/runs?wait=true",
            json={"input": {"log": str(log)}, "metadata": {"unit": "u-2"}},
        )
        assert response.json()["status"] == "success", response.text
    after = await outcomes_once(versioning.url, experiment, 2)
    third.stop()

    assert ended["status"] == "success"
    assert found["total"] == 1
    assert by_variant(found)[experiment.variant_for("u-1")]["count"] == 1
    assert after["total"] == 2
    assert await outcome_metrics(versioning.url) == {("rest", "recorded"): 2.0}


@pytest.fixture
def priced_llm() -> Any:
    """An OpenAI-compatible endpoint answering as ``priced-model``, with usage."""
    with serve_asgi(OpenAIResponder(model=PRICED_MODEL)) as url:
        yield f"{url}/v1"


async def test_a_run_s_cost_is_its_llm_calls_at_the_model_s_price(
    make_runner: Callable[..., Any], priced_llm: str, tmp_path: Path
) -> None:
    runner = await make_runner(llm_api="openai", llm_url=priced_llm, llm_prices=[PRICE])

    response = await runner.post(
        "/workflows/probe/runs?wait=true",
        json={"input": {"log": str(tmp_path / "probe.log"), "ask": "Rates and bonds?"}},
    )

    run = response.json()
    assert run["status"] == "success", run
    assert run["output"]["answer"] == "".join(ANSWER)
    assert run["usage"]["calls"] == 1
    assert run["usage"]["cost_usd"] == pytest.approx(CALL_COST)


async def test_rest_and_kafka_runs_of_an_experiment_reach_the_version_manager_on_kafka(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    kafka_bootstrap: str,
    topics: Topics,
    priced_llm: str,
    tmp_path: Path,
) -> None:
    versioning = versioning_process_factory(
        VERSIONING_TOKEN=TOKEN,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        VERSIONING_RESULTS_TOPIC=topics.results,
        VERSIONING_DLQ_TOPIC=f"{topics.dlq}-versioning",
        VERSIONING_GROUP_ID=f"versioning-{topics.results}",
        VERSIONING_KAFKA_SESSION_TIMEOUT_MS="2000",
    )
    experiment = await start_experiment(versioning.url)
    runner = await make_runner(
        versioning_url=versioning.url,
        versioning_token=TOKEN,
        bootstrap_servers=kafka_bootstrap,
        llm_api="openai",
        llm_url=priced_llm,
        llm_prices=[PRICE],
        **topics.settings(),
    )
    log = str(tmp_path / "probe.log")

    response = await runner.post(
        "/workflows/probe/runs?wait=true",
        json={"input": {"log": log, "ask": "Rates?", "value": 2}, "metadata": {"unit": "rest-1"}},
    )
    event = trigger(
        "probe", {"log": log, "ask": "Bonds?", "value": 4}, metadata={"unit": "kafka-1"}
    )
    await send(kafka_bootstrap, topics.events, [as_message(event)])
    found = await outcomes_once(versioning.url, experiment, 2)

    assert response.json()["status"] == "success"
    assert found["total"] == 2
    variants = by_variant(found)
    rest, kafka = experiment.variant_for("rest-1"), experiment.variant_for("kafka-1")
    if rest == kafka:
        assert variants[rest]["count"] == 2
        assert variants[rest]["score_mean"] == 3.0
    else:
        assert variants[rest]["count"] == variants[kafka]["count"] == 1
        assert variants[rest]["score_mean"] == 2.0
        assert variants[kafka]["score_mean"] == 4.0
    for counted in variants.values():
        if counted["count"]:
            assert counted["cost_mean"] == pytest.approx(CALL_COST)
    assert await outcome_metrics(versioning.url) == {("kafka", "recorded"): 2.0}


@pytest.mark.slow  # the version manager's client gives up on an address first, then retries
async def test_an_event_waits_out_the_version_manager_and_one_it_refuses_is_a_dead_letter(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    kafka_bootstrap: str,
    topics: Topics,
    priced_llm: str,
    tmp_path: Path,
) -> None:
    """An event arriving while the version manager is away waits in its slot and runs once
    it is back; one it refuses (a unit longer than it takes) is a dead letter. Both were
    raised into the work loop, which then committed the partition no further until a
    restart: the first never ran, the second held every event behind it at every restart."""
    port = free_port()
    runner = await make_runner(
        versioning_url=f"http://127.0.0.1:{port}",
        versioning_token=TOKEN,
        bootstrap_servers=kafka_bootstrap,
        llm_api="openai",
        llm_url=priced_llm,
        **topics.settings(),
    )
    log = str(tmp_path / "probe.log")
    early = trigger("probe", {"log": log, "ask": "Rates?", "value": 1}, metadata={"unit": "u1"})
    await send(kafka_bootstrap, topics.events, [as_message(early)])
    retried = await poll_async(lambda: retried_starts(runner), until=lambda n: n >= 1)
    assert retried >= 1, "the event was not tried again"

    versioning = versioning_process_factory(port=port, VERSIONING_TOKEN=TOKEN)
    await start_experiment(versioning.url)
    refused = trigger(
        "probe", {"log": log, "ask": "Bonds?", "value": 2}, metadata={"unit": "u" * 300}
    )
    await send(kafka_bootstrap, topics.events, [as_message(refused)])
    [letter] = await collect(kafka_bootstrap, topics.dlq, lambda found: len(found) >= 1)
    [result] = await collect(kafka_bootstrap, topics.results, lambda found: len(found) >= 1)

    assert letter.value["error_type"] == "invalid_input"
    assert "unit" in letter.value["error"]
    assert result.value["event_id"] == early["event_id"]
    assert result.value["payload"]["status"] == "success"


async def retried_starts(runner: Any) -> float:
    """Starts tried again."""
    return await events_counted(runner, "retried")
