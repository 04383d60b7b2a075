"""Trigger-to-result latency of a PAS workflow through Airflow (a DAG run whose
``LangGraphOperator`` publishes ``workflow.triggered`` and defers on ``workflow-results``) versus
publishing the same event directly and reading its result (``dags/pas_trigger.py``).

Real parts: the embedded broker, the LangGraph runner as a uvicorn process, Airflow 3 from
``.pas/airflow-venv`` started by ``scripts/start_airflow.sh`` (api-server, scheduler,
dag-processor, triggerer) in a PAS_HOME of its own, stopped by ``scripts/stop_all.sh``. The
workflow is ``echo`` (one node, no LLM), so what is measured is the way in and out. Runs are
sequential: latency, not throughput. Through Airflow, a run's latency is from ``POST
/api/v2/dags/{id}/dagRuns`` until the API reports the DAG run successful (polled every 0.1 s).

Needs ``bash scripts/setup_airflow.sh`` first.
Run: ``.venv/bin/python -m bench.airflow_trigger [--runs N]`` (a few minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

import httpx
import msgspec
from langgraph.graph import END, START, StateGraph

from dags.pas_trigger import KafkaTarget, build_trigger, run_workflow
from libs.common.kafka.broker import EmbeddedBroker
from libs.common.kafka.topics import ensure_topics
from services.langgraph_runner.workflows import WorkflowDeps, WorkflowSpec
from tests.support.processes import answers_200, free_port

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = ROOT / ".pas" / "airflow-venv"
DAG_ID = "pas_bench_echo"
BENCH_DAG = f"""
from datetime import datetime

from airflow.sdk import DAG
from pas_airflow import LangGraphOperator

with DAG(
    dag_id="{DAG_ID}",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={{"payload": {{}}}},
    render_template_as_native_obj=True,
    max_active_runs=1,
) as bench:
    LangGraphOperator(task_id="echo", workflow_id="echo", input="{{{{ params.payload }}}}")
"""


# -- the workflow: one node, no LLM ----------------------------------------------------------


class EchoInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    value: int = 0


class EchoState(TypedDict):
    value: int


def _build(_: WorkflowDeps) -> StateGraph[EchoState, Any, Any, Any]:
    graph = StateGraph(EchoState)
    graph.add_node("echo", lambda state: {"value": state["value"]})
    graph.add_edge(START, "echo")
    graph.add_edge("echo", END)
    return graph


ECHO = WorkflowSpec(
    id="echo",
    title="Echo",
    description="One node that returns its input: the bench's workflow.",
    input_type=EchoInput,
    build=_build,
    initial_state=lambda typed, _: {"value": typed.value},
    output=lambda state: {"value": state["value"]},
)


# -- parts ------------------------------------------------------------------------------------


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    if not answers_200(process, url, timeout_s, interval_s=0.2):
        raise RuntimeError(f"{url} did not answer (exit {process.poll()})")


def script(name: str, env: dict[str, str]) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / name)], env=env, check=True, cwd=ROOT)


def airflow_token(url: str, pas_home: Path) -> str:
    passwords = pas_home / "airflow" / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text())["pas"]
    answer = httpx.post(
        f"{url}/auth/token", json={"username": "pas", "password": password}, timeout=60
    )
    token: str = answer.json()["access_token"]
    return token


def through_airflow(client: httpx.Client, runs: int) -> list[float]:
    latencies = []
    for value in range(runs):
        started = time.perf_counter()
        created = client.post(
            f"/dags/{DAG_ID}/dagRuns",
            json={"logical_date": None, "conf": {"payload": {"value": value}}},
        )
        created.raise_for_status()
        run_path = f"/dags/{DAG_ID}/dagRuns/{created.json()['dag_run_id']}"
        while (state := client.get(run_path).json()["state"]) not in ("success", "failed"):
            time.sleep(0.1)
        latencies.append(time.perf_counter() - started)
        if state != "success":
            raise RuntimeError(f"DAG run {run_path} {state}")
    return latencies


def direct(target: KafkaTarget, runs: int) -> list[float]:
    latencies = []
    for value in range(runs):
        event = build_trigger(
            "echo", {"value": value}, workflow_run_id=f"bench-{uuid.uuid4().hex[:8]}"
        )
        started = time.perf_counter()
        run_workflow(target, event, 120)
        latencies.append(time.perf_counter() - started)
    return latencies


def summary(name: str, latencies: list[float]) -> float:
    median = statistics.median(latencies)
    print(
        f"{name:<34} median {median * 1000:8.0f} ms   mean "
        f"{statistics.mean(latencies) * 1000:8.0f} ms   max {max(latencies) * 1000:8.0f} ms"
    )
    return median


def measure(broker: EmbeddedBroker, work: Path, runs: int) -> None:
    """The runner and Airflow (PAS's own scripts) on ``broker``, their files in ``work``; the
    runs published directly, then triggered through Airflow."""
    events, results = "bench-wf-events", "bench-wf-results"
    asyncio.run(ensure_topics(broker.bootstrap_servers, {events: 3, results: 3, "bench-wf-dlq": 1}))
    pas_env = {
        **os.environ,
        "PAS_ENV_FILE": "",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "RUNNER_EVENTS_TOPIC": events,
        "RUNNER_RESULTS_TOPIC": results,
    }
    runner_port = free_port()
    runner = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "uvicorn",
            "services.langgraph_runner.app:app",
            "--port",
            str(runner_port),
            "--no-access-log",
        ],
        cwd=ROOT,
        env={
            **pas_env,
            "RUNNER_DLQ_TOPIC": "bench-wf-dlq",
            "RUNNER_EXTRA_WORKFLOWS": "bench.airflow_trigger:ECHO",
            "RUNNER_CHECKPOINT_PATH": str(work / "checkpoints.db"),
            "RUNNER_STORE_PATH": str(work / "runs.db"),
            "RUNNER_COMMIT_INTERVAL_S": "0.2",
            "LOG_LEVEL": "WARNING",
        },
        stdout=(work / "runner.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    pas_home = work / "pas"
    dags = work / "dags"
    shutil.copytree(ROOT / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    (dags / "bench_dag.py").write_text(BENCH_DAG)
    airflow_port = free_port()
    airflow_env = {
        **pas_env,
        "PAS_HOME": str(pas_home),
        "PAS_AIRFLOW_VENV": str(AIRFLOW_VENV),
        "PAS_AIRFLOW_PORT": str(airflow_port),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }
    try:
        wait_healthy(f"http://127.0.0.1:{runner_port}/health", runner)
        target = KafkaTarget(broker.bootstrap_servers, events_topic=events, results_topic=results)
        direct(target, 2)  # warm up: the runner's consumer group, the topics' leaders
        baseline = summary("direct (publish, read result)", direct(target, runs))

        script("setup_airflow.sh", airflow_env)
        script("start_airflow.sh", airflow_env)
        url = f"http://127.0.0.1:{airflow_port}"
        headers = {"Authorization": f"Bearer {airflow_token(url, pas_home)}"}
        with httpx.Client(base_url=f"{url}/api/v2", headers=headers, timeout=120) as client:
            while client.get(f"/dags/{DAG_ID}").status_code != 200:  # not parsed yet
                time.sleep(0.5)
            client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
            through_airflow(client, 1)  # warm up: the first task process, the triggerer
            airflow = summary("through Airflow (deferred on Kafka)", through_airflow(client, runs))
        print(f"ratio (Airflow / direct, medians): {airflow / baseline:.1f}x")
    finally:
        if pas_home.exists():
            script("stop_all.sh", airflow_env)
        runner.terminate()
        runner.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if not (AIRFLOW_VENV / "bin" / "airflow").exists():
        raise SystemExit("run `bash scripts/setup_airflow.sh` first")

    work = Path(tempfile.mkdtemp(prefix="pas-bench-airflow-"))
    try:
        with EmbeddedBroker(port=free_port(), log_path=work / "broker.log") as broker:
            measure(broker, work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
