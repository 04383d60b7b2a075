"""Airflow as PAS runs it: ``setup_airflow.sh`` and ``start_airflow.sh`` (api-server, scheduler,
dag-processor, triggerer), driven through Airflow's REST API, stopped by ``stop_all.sh``.

The LangGraphOperator's promise is checked where it matters: while the workflow runs, its task
is deferred to the triggerer and holds no worker slot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.documents import DocumentResult
from tests.airflow.airflow_cli import AIRFLOW_VENV, Completed, kill_group, run_in_group
from tests.airflow.conftest import PASStack, dags_folder_with, needs_airflow
from tests.airflow.test_operators import PROBE_DAGS
from tests.support.polling import poll
from tests.support.processes import REPO_ROOT, free_port

pytestmark = [*needs_airflow, pytest.mark.timeout(900)]

DAG_ID = "pas_test_probe_kafka"
TASK_ID = "run_workflow"
# The topic pas_on_llm_result watches here: the module's own, so no other test's results land on it.
LLM_RESULTS_TOPIC = f"llm-results-af-{uuid.uuid4().hex[:8]}"


class RunningAirflow:
    def __init__(self, url: str, token: str, pas_home: Path, dags_folder: Path) -> None:
        self.client = httpx.Client(
            # Generous: on two busy cores the api-server can take its time.
            base_url=f"{url}/api/v2",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        self.pas_home = pas_home
        self.dags_folder = dags_folder

    def get(self, path: str) -> dict[str, Any]:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_for(
        self, path: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 300
    ) -> dict[str, Any]:
        """Poll ``GET path`` until ``done`` says so (a 404 is "not yet": a DAG not parsed)."""

        def ask() -> tuple[int, dict[str, Any]]:
            response = self.client.get(path)
            assert response.status_code in (200, 404), response.text
            return response.status_code, response.json()

        status, body = poll(
            ask,
            until=lambda answer: answer[0] == 200 and done(answer[1]),
            timeout_s=timeout_s,
            interval_s=0.5,
        )
        assert status == 200, f"{path} never got there: {body}"
        assert done(body), f"{path} never got there: {body}"
        return body


def settled(run_or_task: dict[str, Any]) -> bool:
    return run_or_task["state"] in ("success", "failed")


def script(
    name: str, env: dict[str, str], timeout_s: float = 300, *, leave_running: bool = False
) -> Completed:
    done = run_in_group(
        ["bash", str(REPO_ROOT / "scripts" / name)],
        env,
        timeout_s,
        REPO_ROOT,
        leave_running=leave_running,
    )
    assert done.returncode == 0, done.output
    return done


# The DAGs from configuration, on the probe workflow: the first updates an asset when its
# workflow succeeds, the second runs whenever that asset is updated.
WORKFLOWS_YAML = """
dags:
  - dag_id: pas_test_digest
    workflow_id: probe
    payload: {{log: "{log}", value: 1}}
    updates: [pas_test_digest_done]
  - dag_id: pas_test_after_digest
    workflow_id: probe
    payload: {{log: "{log}", value: 2}}
    after: [pas_test_digest_done]
  - dag_id: pas_test_versioned
    workflow_id: probe
    payload: {{log: "{log}", value: 3}}
"""


@pytest.fixture(scope="module")
def running_airflow(
    tmp_path_factory: pytest.TempPathFactory, pas_stack: PASStack
) -> Iterator[RunningAirflow]:
    """Airflow set up and started by PAS's scripts in a PAS_HOME of the module's own (PID
    files, logs, AIRFLOW_HOME), on a free port, with the test DAGs and a workflows.yaml of the
    module's own; stopped by stop_all.sh."""
    tmp_path = tmp_path_factory.mktemp("running-airflow")
    pas_home = tmp_path / "pas"
    port = free_port()
    dags = dags_folder_with(
        tmp_path,
        {
            "test_dags.py": PROBE_DAGS,
            "workflows.yaml": WORKFLOWS_YAML.format(log=tmp_path / "probe.log"),
        },
    )
    env = {
        **os.environ,
        "PAS_HOME": str(pas_home),
        "PAS_AIRFLOW_VENV": str(AIRFLOW_VENV),
        "PAS_AIRFLOW_PORT": str(port),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        # The scheduler looks for new DAG runs and the dag-processor for files this often.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Every parse compares the DAG with its stored version (by default a DAG written less
        # than 30 s ago is not looked at again: a change would wait for a later parse).
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
        **pas_stack.env(),
        "LLM_RESULTS_TOPIC": LLM_RESULTS_TOPIC,
        # As start_airflow.sh defines it, but from the start of the topic: the watcher may join
        # its group after the test has published.
        "AIRFLOW_CONN_PAS_KAFKA": json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    "bootstrap.servers": pas_stack.bootstrap,
                    "group.id": f"airflow-{LLM_RESULTS_TOPIC}",
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 6000,
                },
            }
        ),
    }
    asyncio.run(ensure_topics(pas_stack.bootstrap, {LLM_RESULTS_TOPIC: 1}))
    started: Completed | None = None
    ours: set[int] = set()
    try:
        script("setup_airflow.sh", env)
        started = script("start_airflow.sh", env, leave_running=True)
        ours = airflow_sessions(pas_home)
        passwords = pas_home / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["pas"]
        token = httpx.post(
            f"http://127.0.0.1:{port}/auth/token",
            json={"username": "pas", "password": password},
            timeout=30,
        ).json()["access_token"]
        running = RunningAirflow(f"http://127.0.0.1:{port}", token, pas_home, dags)
        # How tasks reach the REST API to write the DAG run's note (pas_airflow/run_note.py).
        api = running.client.post(
            "/connections",
            json={
                "connection_id": "pas_airflow_api",
                "conn_type": "http",
                "host": f"http://127.0.0.1:{port}",
                "login": "pas",
                "password": password,
            },
        )
        assert api.status_code == 201, api.text
        yield running
    finally:
        stopped = script("stop_all.sh", env, timeout_s=120)
        if started is not None:
            kill_group(started.process_group)  # the components' supervisors
            # Every component ran in a session of its own: nothing of them may be left.
            leftovers = [row for row in processes() if row[1] in ours and row[2][0] != "Z"]
            for pid, *_ in leftovers:
                os.kill(pid, signal.SIGKILL)
            assert not leftovers, f"left after stop_all.sh:\n{leftovers}\n{stopped.output}"


def processes() -> list[tuple[int, int, str, str]]:
    """(pid, session id, state, command) of every process."""
    table = subprocess.run(
        ["ps", "-eo", "pid=,sid=,stat=,ppid=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in table.splitlines():
        pid, sid, stat, _, args = [*line.split(None, 4), ""][:5]
        rows.append((int(pid), int(sid), stat, args))
    return rows


def airflow_sessions(pas_home: Path) -> set[int]:
    """The sessions the started components run in: each supervisor (its PID file's process)
    starts its component as a session leader."""
    supervisors = {int(p.read_text()) for p in (pas_home / "run").glob("airflow-*.pid")}
    table = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout
    return {
        int(pid)
        for pid, ppid in (line.split() for line in table.splitlines())
        if int(ppid) in supervisors
    }


def test_a_deferred_workflow_task_holds_no_worker_slot_until_its_result_lands(
    running_airflow: RunningAirflow, tmp_path: Path
) -> None:
    airflow = running_airflow
    gate = tmp_path / "gate"  # the probe workflow waits in its node b until this file exists
    payload = {"log": str(tmp_path / "log"), "gate": str(gate), "value": 7}
    airflow.wait_for(f"/dags/{DAG_ID}", lambda dag: not dag["is_stale"])
    assert airflow.client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200

    started = airflow.client.post(
        f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"payload": payload}}
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]
    task = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}"

    airflow.wait_for(task, lambda ti: ti["state"] == "deferred")
    pool = airflow.get("/pools/default_pool")
    assert (pool["running_slots"], pool["deferred_slots"]) == (0, 1)

    gate.touch()
    finished = airflow.wait_for(task, settled)
    assert finished["state"] == "success"
    output = airflow.get(f"{task}/xcomEntries/return_value")
    assert output["value"] == {"visited": ["a", "b", "c"], "value": 7}
    run = airflow.wait_for(f"/dags/{DAG_ID}/dagRuns/{run_id}", settled)
    assert run["state"] == "success"
    # The run's note names the version that ran: the champion the runner took from the
    # version manager.
    assert run["note"] == "run_workflow: probe version 1 (champion)"


def test_a_dag_scheduled_on_an_asset_runs_when_another_dag_updates_it(
    running_airflow: RunningAirflow,
) -> None:
    airflow = running_airflow
    for dag_id in ("pas_test_digest", "pas_test_after_digest"):
        airflow.wait_for(f"/dags/{dag_id}", lambda dag: not dag["is_stale"])
        assert airflow.client.patch(f"/dags/{dag_id}", json={"is_paused": False}).is_success
    assert airflow.get("/dags/pas_test_after_digest/dagRuns")["dag_runs"] == []

    started = airflow.client.post("/dags/pas_test_digest/dagRuns", json={"logical_date": None})
    assert started.status_code == 200, started.text
    digest_run_id = started.json()["dag_run_id"]
    assert airflow.wait_for(f"/dags/pas_test_digest/dagRuns/{digest_run_id}", settled)["state"] == (
        "success"
    )

    runs = airflow.wait_for(
        "/dags/pas_test_after_digest/dagRuns",
        lambda found: bool(found["dag_runs"]) and all(settled(r) for r in found["dag_runs"]),
    )["dag_runs"]
    # The digest's run updated the asset, and each run of the DAG after it is one that update
    # made. Usually one, but on a loaded CI machine (SQLite, two cores) Airflow once made two
    # runs of one digest run (dags/README.md); so no count is asserted, only that every run has
    # this cause.
    events = airflow.get("/assets/events?source_dag_id=pas_test_digest")["asset_events"]
    assert events, "the digest's run updated no asset"
    assert {(e["name"], e["source_run_id"]) for e in events} == {
        ("pas_test_digest_done", digest_run_id)
    }, events
    made_by_the_update = {d["run_id"] for e in events for d in e["created_dagruns"]}
    assert {r["dag_run_id"] for r in runs} <= made_by_the_update, (runs, events)
    for run in runs:
        assert (run["run_type"], run["state"]) == ("asset_triggered", "success"), run
        output = airflow.get(
            f"/dags/pas_test_after_digest/dagRuns/{run['dag_run_id']}"
            "/taskInstances/run_workflow/xcomEntries/return_value"
        )
        assert output["value"] == {"visited": ["a", "b", "c"], "value": 2}


def test_changing_workflows_yaml_makes_a_new_version_of_its_dag(
    running_airflow: RunningAirflow,
) -> None:
    airflow = running_airflow
    dag_id = "pas_test_versioned"
    airflow.wait_for(f"/dags/{dag_id}", lambda dag: not dag["is_stale"])
    # Airflow keeps a DAG version once a run has used it (a change before that rewrites the
    # unused version in place). The DAG is paused: its run stays queued, its task instance
    # recorded against version 1.
    started = airflow.client.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert started.status_code == 200, started.text
    assert [v["version_number"] for v in started.json()["dag_versions"]] == [1]

    reparsed(airflow, dag_id)  # the file as it was
    assert version_numbers(airflow, dag_id) == [1]

    config = airflow.dags_folder / "workflows.yaml"
    config.write_text(config.read_text().replace("value: 3", "value: 4"))
    request_parse(airflow, dag_id)

    versions = airflow.wait_for(
        f"/dags/{dag_id}/dagVersions", lambda found: found["total_entries"] > 1
    )
    assert [v["version_number"] for v in versions["dag_versions"]] == [1, 2]
    assert airflow.get(f"/dags/{dag_id}/details")["params"]["payload"]["value"]["value"] == 4


def version_numbers(airflow: RunningAirflow, dag_id: str) -> list[int]:
    """The DAG's versions as Airflow's version history (the UI's) lists them."""
    return [v["version_number"] for v in airflow.get(f"/dags/{dag_id}/dagVersions")["dag_versions"]]


def request_parse(airflow: RunningAirflow, dag_id: str) -> dict[str, Any]:
    """Ask the dag-processor to parse the DAG's file next; the DAG as it was before."""
    dag = airflow.get(f"/dags/{dag_id}")
    requested = airflow.client.put(f"/parseDagFile/{dag['file_token']}")
    assert requested.status_code == 201, requested.text
    return dag


def reparsed(airflow: RunningAirflow, dag_id: str) -> None:
    """Once the dag-processor has parsed the DAG's file again."""
    before = request_parse(airflow, dag_id)["last_parsed_time"]
    airflow.wait_for(f"/dags/{dag_id}", lambda dag: dag["last_parsed_time"] != before)


# A result as the Kafka LLM processor publishes it: PAS's own wire type, encoded as it does.
DOCUMENT_RESULT = msgspec.json.encode(
    DocumentResult(
        doc_id="doc-af-1",
        task="summary",
        status="ok",
        answer="Revenue rose 12% on services.",
        model="embedded",
        prompt_tokens=120,
        completion_tokens=9,
        processing_ms=840.5,
        attempts=1,
        source_offset="financial-documents:0:41",
        processed_at=datetime(2026, 1, 5, 6, tzinfo=UTC),
    )
)


async def publish(bootstrap: str, topic: str, key: bytes, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_the_kafka_watched_dag_runs_when_a_document_result_lands(
    running_airflow: RunningAirflow, pas_stack: PASStack
) -> None:
    airflow = running_airflow
    dag_id = "pas_on_llm_result"
    airflow.wait_for(f"/dags/{dag_id}", lambda dag: not dag["is_stale"])
    assert airflow.client.patch(f"/dags/{dag_id}", json={"is_paused": False}).is_success

    # Something that is not a result first: the watcher passes it by, no run.
    not_a_result = json.dumps({"doc_id": "doc-af-0"}).encode()
    asyncio.run(
        publish(
            pas_stack.bootstrap,
            LLM_RESULTS_TOPIC,
            b"doc-af-1",
            [not_a_result, DOCUMENT_RESULT],
        )
    )

    runs = airflow.wait_for(
        f"/dags/{dag_id}/dagRuns", lambda found: any(settled(r) for r in found["dag_runs"])
    )["dag_runs"]
    (run,) = runs
    assert (run["run_type"], run["state"]) == ("asset_triggered", "success")
    seen = airflow.get(
        f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/record_results"
        "/xcomEntries/return_value"
    )["value"]
    assert [(r["doc_id"], r["task"], r["status"]) for r in seen] == [("doc-af-1", "summary", "ok")]
