"""``airflow dags test`` of PAS's DAGs and operators against a running PAS: the broker, the
LangGraph runner with its LLM nodes on the embedded model, the provider router."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.schemas.workflows import WorkflowTriggered
from tests.airflow.airflow_cli import Airflow
from tests.airflow.conftest import (
    MAX_RESULT_BYTES,
    PASStack,
    add_version,
    dags_folder_with,
    needs_airflow,
)
from tests.langgraph_runner.conftest import collect
from tests.support.processes import ServiceProcess, free_port

# Each `airflow dags test` starts Airflow (tens of seconds on two busy cores) and waits for a
# workflow on the embedded model.
pytestmark = [*needs_airflow, pytest.mark.timeout(900)]

ROUTER_APP = "services.provider_router.provider_router:app"
DAG_TEST_DEADLINE_S = 420  # `dags test` ignores SIGTERM: past this its process group is killed

PROBE_DAGS = """
from datetime import datetime, timedelta

from airflow.sdk import DAG
from pas_airflow import LangGraphOperator, PASLLMOperator

for mode in ("kafka", "rest"):
    with DAG(
        dag_id=f"pas_test_probe_{mode}",
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        params={"payload": {}},
        render_template_as_native_obj=True,
        default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
    ) as probe:
        LangGraphOperator(
            task_id="run_workflow", workflow_id="probe", input="{{ params.payload }}", mode=mode
        )
    globals()[probe.dag_id] = probe

with DAG(
    dag_id="pas_test_llm", schedule=None, start_date=datetime(2025, 1, 1), catchup=False
) as pas_test_llm:
    PASLLMOperator(
        task_id="ask",
        capability="explanation",
        messages="In one sentence: what is a bond?",
        temperature=0,
        max_tokens=32,
    )
"""


@pytest.fixture
def test_airflow(tmp_path: Path) -> Airflow:
    """An Airflow whose DAGs folder is PAS's plus the test DAGs above."""
    folder = dags_folder_with(tmp_path, {"pas_test_dags.py": PROBE_DAGS})
    return Airflow.create(tmp_path / "airflow", dags_folder=folder)


def dags_test(
    airflow: Airflow,
    stack: PASStack,
    dag_id: str,
    conf: dict[str, object] | None = None,
    **env: str,
) -> str:
    args = ["dags", "test", dag_id]
    if conf is not None:
        args += ["--conf", json.dumps(conf)]
    done = airflow.run(*args, timeout_s=DAG_TEST_DEADLINE_S, env={**stack.env(), **env})
    (airflow.root / f"dags-test-{dag_id}.log").write_text(done.output)  # kept for a look later
    return done.output


def state_of(airflow: Airflow, dag_id: str) -> str:
    (run,) = airflow.dag_runs(dag_id)
    state: str = run["state"]
    return state


def test_the_document_analysis_dag_runs_its_workflow_deferred_on_kafka(
    airflow: Airflow, pas_stack: PASStack
) -> None:
    output = dags_test(airflow, pas_stack, "pas_document_analysis")

    assert state_of(airflow, "pas_document_analysis") == "success", output[-6000:]
    # The operator published and deferred; the trigger (not the task) waited on the results.
    assert "deferring until its result" in output
    assert f"waiting on {pas_stack.results_topic} for the result of event" in output
    analysis = airflow.xcom("pas_document_analysis", "run_workflow")
    assert set(analysis) >= {"title", "summary", "sentiment", "key_points", "word_count"}
    assert analysis["title"] == "Overnight research digest"
    run = airflow.xcom("pas_document_analysis", "run_workflow", key="run")
    assert run["status"] == "success"
    assert run["workflow_run_id"].startswith("pas_document_analysis:")
    # The runner took the champion from the version manager; the run names it (the note
    # itself needs an api-server: tests/airflow/test_running_airflow.py).
    assert run["workflow_version"] == 1
    assert "run_workflow: document_analysis version 1 (champion)" in output
    # What it published is the event the runner's own type accepts, to the letter.
    events = asyncio.run(
        collect(
            pas_stack.bootstrap,
            pas_stack.events_topic,
            lambda found: any(r.value["event_id"] == run["event_id"] for r in found),
        )
    )
    (sent,) = [r for r in events if r.value["event_id"] == run["event_id"]]
    triggered = msgspec.json.decode(msgspec.json.encode(sent.value), type=WorkflowTriggered)
    assert triggered.source == "airflow"
    assert triggered.metadata["dag_id"] == "pas_document_analysis"
    assert sent.key == run["workflow_run_id"]


# What workflows.yaml sends the pre-trade check: a trade whose notional breaches the limit.
PRE_TRADE_TICKER, PRE_TRADE_QUANTITY = "JPM", 20000


def test_the_pre_trade_check_waits_for_a_person_and_records_the_approval(
    airflow: Airflow, pas_stack: PASStack
) -> None:
    dag_id = "pas_pre_trade_check"
    approval = {"approved": True, "reviewer": "desk-head", "comment": "hedged by the desk"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        # `dags test` runs the DAG in the background while this test plays the person.
        running = pool.submit(dags_test, airflow, pas_stack, dag_id)
        paused = interrupted_run(pas_stack.runner_url, dag_id, running)
        run_url = f"{pas_stack.runner_url}/runs/{paused['run_id']}"
        try:
            (asked,) = paused["interrupts"]
            assert asked["value"]["trade"]["ticker"] == PRE_TRADE_TICKER
            assert asked["value"]["trade"]["quantity"] == PRE_TRADE_QUANTITY
            assert asked["value"]["breaches"]
            assert set(asked["response_schema"]["required"]) == {"approved", "reviewer"}
            answered = httpx.post(
                f"{run_url}/resume",
                json={"resume": approval, "interrupt_id": asked["id"]},
                timeout=60,
            )
            assert answered.status_code in (200, 202), answered.text
        except BaseException:
            # The run would wait for its person until `dags test`'s deadline: end it now (its
            # outcome fails the task).
            httpx.post(f"{run_url}/cancel", timeout=60)
            raise
        output = running.result()

    assert state_of(airflow, dag_id) == "success", output[-6000:]
    # The task was deferred on Kafka through the person's wait, then got the run's result.
    assert "deferring until its result" in output
    result = airflow.xcom(dag_id, "run_workflow")
    assert result["review"] == approval
    assert result["decision"] == "approved"
    assert result["breaches"] == asked["value"]["breaches"]
    assert result["handoffs"][-2:] == ["human_review", "desk_note"]
    assert isinstance(result["note"], str)
    assert result["note"].strip()
    assert result["price"]["notional"] > 0
    run = airflow.xcom(dag_id, "run_workflow", key="run")
    assert (run["run_id"], run["status"]) == (paused["run_id"], "success")


def interrupted_run(runner_url: str, dag_id: str, running: Future[str]) -> dict[str, Any]:
    """The runner's run of ``dag_id`` once it waits for a person; if ``dags test`` ends first,
    its output (it ends by its deadline at the latest)."""
    while not running.done():
        listed = httpx.get(
            f"{runner_url}/runs",
            params={"workflow_id": "network", "status": "interrupted"},
            timeout=60,
        )
        assert listed.status_code == 200, listed.text
        ours: list[dict[str, Any]] = [
            r
            for r in listed.json()["runs"]
            if (r.get("workflow_run_id") or "").startswith(f"{dag_id}:")
        ]
        if ours:
            (run,) = ours
            return run
        time.sleep(1)
    output = running.result()
    raise AssertionError(f"{dag_id} ended without waiting for a person:\n{output[-6000:]}")


def test_the_market_brief_dag_runs_the_supervisor_workflow(
    airflow: Airflow, pas_stack: PASStack
) -> None:
    dag_id = "pas_market_brief"

    output = dags_test(airflow, pas_stack, dag_id)

    assert state_of(airflow, dag_id) == "success", output[-6000:]
    brief = airflow.xcom(dag_id, "run_workflow")
    # The model picks the route; each specialist is heard once at most, and the brief is put
    # together from what they reported.
    route = brief["route"]
    assert route
    assert len(route) == len(set(route))
    assert set(route) <= {"quant", "risk", "analyst"}
    assert brief["brief"].startswith(
        "Question: Which of our large-cap tech names carries the most risk this month?"
    )
    if "quant" in route:
        assert set(brief["figures"]) == {"AAPL", "MSFT", "NVDA"}
    if "risk" in route:
        assert set(brief["flags"]) == {"AAPL", "MSFT", "NVDA"}
    if "analyst" in route:
        assert brief["view"].strip()
    run = airflow.xcom(dag_id, "run_workflow", key="run")
    assert run["status"] == "success"
    assert run["workflow_run_id"].startswith(f"{dag_id}:")


def test_a_failed_workflow_fails_the_task_once_with_the_workflow_s_reason(
    test_airflow: Airflow, pas_stack: PASStack, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    payload = {"log": str(tmp_path / "log"), "broken": str(broken)}

    output = dags_test(test_airflow, pas_stack, "pas_test_probe_kafka", {"payload": payload})

    assert state_of(test_airflow, "pas_test_probe_kafka") == "failed", output[-6000:]
    assert "c is broken (on purpose)" in output
    tries = test_airflow.task_tries("pas_test_probe_kafka", "run_workflow")
    assert [t["state"] for t in tries] == ["failed"]  # retries: 2, yet no retry


def test_an_output_too_large_for_the_result_event_is_read_from_the_run(
    test_airflow: Airflow, pas_stack: PASStack, tmp_path: Path
) -> None:
    """The probe echoes ``value``: its output exceeds the runner's ``RUNNER_MAX_RESULT_BYTES``,
    so the result event comes without it; the operator reads it from the run."""
    large = "x" * (2 * MAX_RESULT_BYTES)
    payload = {"log": str(tmp_path / "log"), "value": large}

    output = dags_test(test_airflow, pas_stack, "pas_test_probe_kafka", {"payload": payload})

    assert state_of(test_airflow, "pas_test_probe_kafka") == "success", output[-6000:]
    assert "not in its event; reading it from" in output
    assert test_airflow.xcom("pas_test_probe_kafka", "run_workflow") == {
        "visited": ["a", "b", "c"],
        "value": large,
    }


def test_rest_mode_runs_the_workflow_over_the_runner_s_http_api(
    test_airflow: Airflow, pas_stack: PASStack, tmp_path: Path
) -> None:
    payload = {"log": str(tmp_path / "log"), "value": 3}

    output = dags_test(test_airflow, pas_stack, "pas_test_probe_rest", {"payload": payload})

    assert state_of(test_airflow, "pas_test_probe_rest") == "success", output[-6000:]
    assert test_airflow.xcom("pas_test_probe_rest", "run_workflow") == {
        "visited": ["a", "b", "c"],
        "value": 3,
    }
    run = test_airflow.xcom("pas_test_probe_rest", "run_workflow", key="run")
    recorded = httpx.get(f"{pas_stack.runner_url}/runs/{run['run_id']}").json()
    assert recorded["status"] == "success"
    assert recorded["metadata"]["dag_id"] == "pas_test_probe_rest"


@pytest.fixture
def router(llm_process: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The provider router with one OpenAI-compatible provider: the PAS LLM service on the
    embedded model, at 1 USD per 1k tokens in and out."""
    providers = tmp_path / "providers.toml"
    providers.write_text(
        f'[[providers]]\nname = "smol"\nbase_url = "{llm_process.url}/v1"\n'
        '[[providers.models]]\nname = "smol"\ncapabilities = ["explanation"]\n'
        "input_per_1k = 1.0\noutput_per_1k = 1.0\n"
    )
    process = ServiceProcess(
        ROUTER_APP,
        free_port(),
        {
            "ROUTER_USE_REGISTRY": "false",
            "ROUTER_PROVIDERS_FILE": str(providers),
            "ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
            "LOG_LEVEL": "WARNING",
        },
        tmp_path / "router.log",
    ).start()
    yield process
    process.stop()


def test_the_llm_operator_pushes_text_tokens_and_cost(
    test_airflow: Airflow, pas_stack: PASStack, router: ServiceProcess
) -> None:
    output = dags_test(test_airflow, pas_stack, "pas_test_llm", ROUTER_URL=router.url)

    assert state_of(test_airflow, "pas_test_llm") == "success", output[-6000:]
    text = test_airflow.xcom("pas_test_llm", "ask", key="text")
    tokens = test_airflow.xcom("pas_test_llm", "ask", key="tokens")
    cost = test_airflow.xcom("pas_test_llm", "ask", key="cost_usd")
    answer = test_airflow.xcom("pas_test_llm", "ask")
    assert isinstance(text, str)
    assert text.strip()
    assert tokens["completion_tokens"] > 0
    assert tokens["total_tokens"] == tokens["prompt_tokens"] + tokens["completion_tokens"]
    assert cost == pytest.approx(tokens["total_tokens"] / 1000)  # 1 USD per 1k, in and out
    assert answer["provider"] == "smol"
    assert answer["text"] == text


def test_the_ab_dag_runs_the_assigned_variant_and_its_outcome_is_counted(
    airflow: Airflow, pas_stack: PASStack, tmp_path: Path
) -> None:
    challenger = add_version(pas_stack.versioning_url, "probe", "the challenger")
    started = httpx.post(
        f"{pas_stack.versioning_url}/experiments",
        json={"workflow_id": "probe", "variants": {"A": 1, "B": challenger}, "min_samples": 10},
        timeout=60,
    )
    assert started.status_code == 201, started.text
    experiment_id = started.json()["id"]
    unit = "desk-7"
    expected = httpx.post(
        f"{pas_stack.versioning_url}/experiments/{experiment_id}/assign",
        json={"unit": unit},
        timeout=60,
    ).json()
    conf = {
        "workflow_id": "probe",
        "experiment_id": experiment_id,
        "unit": unit,
        "payload": {"log": str(tmp_path / "log"), "value": 5},
    }
    try:
        output = dags_test(airflow, pas_stack, "pas_ab_test", conf)

        assert state_of(airflow, "pas_ab_test") == "success", output[-6000:]
        chosen, other = (
            f"run_{expected['variant']}",
            "run_B" if expected["variant"] == "A" else "run_A",
        )
        states = {t: airflow.task_tries("pas_ab_test", t)[-1]["state"] for t in (chosen, other)}
        assert states == {chosen: "success", other: "skipped"}
        run = airflow.xcom("pas_ab_test", chosen, key="run")
        assert (run["experiment_id"], run["variant"], run["unit"]) == (
            experiment_id,
            expected["variant"],
            unit,
        )
        assert str(run["workflow_version"]) == str(expected["version"])
        report = airflow.xcom("pas_ab_test", "report")
        assert (report["variant"], report["status"]) == (expected["variant"], "success")
        # The runner's outcome on workflow-results reaches the version manager's experiment.
        counted = counted_outcomes(pas_stack.versioning_url, experiment_id, expected["variant"])
        assert counted == 1
    finally:
        httpx.post(f"{pas_stack.versioning_url}/experiments/{experiment_id}/stop", timeout=60)


def counted_outcomes(versioning_url: str, experiment_id: str, variant: str) -> int:
    """The variant's outcome count once it has one (the version manager reads them from Kafka,
    a moment after the run); the outcome poll is bounded by pytest's timeout."""
    while True:
        detail = httpx.get(f"{versioning_url}/experiments/{experiment_id}", timeout=60).json()
        (result,) = [v for v in detail["results"]["variants"] if v["variant"] == variant]
        if result["count"]:
            count: int = result["count"]
            return count
        time.sleep(0.5)
