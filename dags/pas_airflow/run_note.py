"""The DAG run's note names the PAS workflow version a task ran.

Airflow 3's Task SDK gives a task the run's note read-only (``context["dag_run"].note``) and no
call to change it; the supported way is Airflow's public REST API, ``PATCH
/api/v2/dags/{dag_id}/dagRuns/{run_id}`` with ``{"note": ...}``. A task reaches it through the
Airflow connection ``pas_airflow_api`` (type ``http``: the api-server's URL as host, a user's
login and password, exchanged for a token at ``POST /auth/token``). Without that connection
(``airflow dags test``, which runs no api-server) the note is skipped with a log line; the
version is in XCom ``run`` either way.

One line per task (``<task_id>: <workflow> version <n> ...``), so the tasks of one DAG run do
not overwrite each other's lines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowNotFoundException

API_CONN_ID = "pas_airflow_api"
NOTE_MAX_CHARS = 1000  # DAGRunPatchBody.note's bound

logger = logging.getLogger("pas.airflow.run_note")


def version_line(task_id: str, workflow_id: str, run: Mapping[str, Any]) -> str:
    """``run_workflow: document_analysis version 3 (champion)``, or with the experiment's
    variant: ``run_B: probe version 2 (experiment exp-1, variant B, unit desk-7)``."""
    version = run.get("workflow_version")
    ran = f"version {version}" if version is not None else "built-in defaults (no version)"
    if run.get("experiment_id"):
        how = (
            f"experiment {run['experiment_id']}, variant {run.get('variant')}, "
            f"unit {run.get('unit')}"
        )
    else:
        how = "champion" if version is not None else "no version manager entry"
    return f"{task_id}: {workflow_id} {ran} ({how})"


def merged_note(current: str | None, task_id: str, line: str) -> str:
    """``current`` with this task's line replaced (a retry) or added."""
    kept = [old for old in (current or "").splitlines() if not old.startswith(f"{task_id}: ")]
    return "\n".join([*kept, line])[-NOTE_MAX_CHARS:]


def api_base(connection: Connection) -> str:
    host = (connection.host or "").rstrip("/")
    if "://" not in host:
        host = f"{connection.schema or 'http'}://{host}"
    return f"{host}:{connection.port}" if connection.port else host


def write_note(dag_id: str, run_id: str, task_id: str, line: str) -> bool:
    """Add ``line`` to the DAG run's note through the REST API; False when there is no
    ``pas_airflow_api`` connection. A failed call is logged, never fails the task (the workflow
    ran; its version is in XCom)."""
    try:
        connection = BaseHook.get_connection(API_CONN_ID)
    except AirflowNotFoundException:
        logger.info("no Airflow connection %r: DAG run note not written (%s)", API_CONN_ID, line)
        return False
    base = api_base(connection)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            token = client.post(
                "/auth/token",
                json={"username": connection.login, "password": connection.password},
            )
            token.raise_for_status()
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
            found = client.get(path)
            found.raise_for_status()
            note = merged_note(found.json().get("note"), task_id, line)
            client.patch(path, json={"note": note}).raise_for_status()
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        logger.warning("could not write the DAG run note on %s: %s", base, exc)
        return False
    logger.info("DAG run note: %s", line)
    return True
