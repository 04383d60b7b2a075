"""The A/B DAG of spec Milestone 3.4: one run of a PAS workflow at the version an experiment of
the version manager assigns to a unit.

``assign`` asks the version manager (``POST /experiments/{id}/assign`` on ``VERSIONING_URL``)
which variant the unit gets (sticky: a hash of the unit, the same unit always gets the same);
``choose_variant`` (``@task.branch``) follows it to ``run_A`` or ``run_B``, a
:class:`~pas_airflow.langgraph.LangGraphOperator` in REST mode pinned to that variant's version,
the run carrying the assignment in its metadata; ``report`` gives the outcome as the DAG saw it.
The version manager counts the outcome itself: the runner publishes every run's end on
``workflow-results`` (or, without Kafka, posts an experiment's outcomes to the version manager),
keyed by the run, so it counts once.

Params (``airflow dags test pas_ab_test -c '{"experiment_id": "...", "unit": "desk-7"}'``):

- ``workflow_id``: the workflow under test (default ``document_analysis``);
- ``experiment_id``: default empty: the workflow's running experiment (the newest);
- ``unit``: what the assignment sticks to; default empty: the DAG run's id (each run a unit);
- ``payload``: the workflow's input (default: a short analyst note).

The experiment's variants must be named ``A`` and ``B`` (the branch's tasks); another name
fails ``choose_variant`` with what it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException
from pas_airflow import LangGraphOperator
from pas_airflow.service_calls import json_answer
from pas_airflow.wire import VERSIONING_PORT, bearer, service_url

VARIANTS = ("A", "B")
DEFAULT_PAYLOAD = {
    "title": "A/B sample note",
    "doc_type": "analyst_note",
    "content": "Margins widened on lower input costs; guidance was raised for the full year.",
}
ASSIGNMENT = "ti.xcom_pull(task_ids='assign')"


def running_experiment(client: httpx.Client, workflow_id: str) -> str:
    """The id of ``workflow_id``'s newest running experiment."""
    found = json_answer(
        client.get("/experiments", params={"workflow_id": workflow_id, "status": "running"}),
        f"listing the running experiments of {workflow_id}",
    )
    if not found["experiments"]:
        raise AirflowFailException(
            f"no running experiment of {workflow_id!r}: start one (POST /experiments on the "
            "version manager) or pass experiment_id"
        )
    experiment_id: str = found["experiments"][-1]["id"]
    return experiment_id


def assignment_of(workflow_id: str, experiment_id: str, unit: str) -> dict[str, Any]:
    """The unit's variant and version in the experiment, as the run's metadata carries them
    (the version manager checks an outcome against them)."""
    base = service_url("VERSIONING_URL", VERSIONING_PORT)
    with httpx.Client(base_url=base, headers=bearer("VERSIONING_TOKEN"), timeout=30) as client:
        experiment_id = experiment_id or running_experiment(client, workflow_id)
        assigned = json_answer(
            client.post(f"/experiments/{experiment_id}/assign", json={"unit": unit}),
            f"assigning {unit!r} in experiment {experiment_id} on {base}",
        )
    if assigned["workflow_id"] != workflow_id:
        raise AirflowFailException(
            f"experiment {experiment_id} tests {assigned['workflow_id']!r}, not {workflow_id!r}"
        )
    return {
        "experiment_id": assigned["experiment_id"],
        "unit": assigned["unit"],
        "variant": assigned["variant"],
        "workflow_version": assigned["version"],
    }


with DAG(
    dag_id="pas_ab_test",
    description="A PAS workflow at the version its A/B experiment assigns to a unit.",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={
        "workflow_id": Param("document_analysis", type="string", minLength=1),
        "experiment_id": Param("", type="string", description="Empty: the running one."),
        "unit": Param("", type="string", description="Empty: the DAG run's id."),
        "payload": Param(DEFAULT_PAYLOAD, type="object"),
    },
    render_template_as_native_obj=True,
    default_args={"owner": "pas", "retries": 0},
    tags=["pas", "langgraph", "ab-test"],
    doc_md=__doc__,
) as pas_ab_test:

    @task
    def assign(params: dict[str, Any], run_id: str) -> dict[str, Any]:
        return assignment_of(
            params["workflow_id"], params["experiment_id"], params["unit"] or run_id
        )

    @task.branch
    def choose_variant(assignment: dict[str, Any]) -> str:
        variant = assignment["variant"]
        if variant not in VARIANTS:
            raise AirflowFailException(
                f"experiment {assignment['experiment_id']} assigned variant {variant!r}; this "
                f"DAG branches to {', '.join(VARIANTS)}"
            )
        return f"run_{variant}"

    @task(trigger_rule="none_failed_min_one_success")
    def report(assignment: dict[str, Any], ti: Any) -> dict[str, Any]:
        """What ran, for the DAG's readers; the version manager already has the outcome."""
        run = ti.xcom_pull(task_ids=f"run_{assignment['variant']}", key="run")
        return {**assignment, "run_id": run["run_id"], "status": run["status"]}

    assigned = assign()
    runs = [
        LangGraphOperator(
            task_id=f"run_{variant}",
            workflow_id="{{ params.workflow_id }}",
            input="{{ params.payload }}",
            version=f"{{{{ {ASSIGNMENT}['workflow_version'] }}}}",
            metadata=f"{{{{ {ASSIGNMENT} }}}}",
            mode="rest",
        )
        for variant in VARIANTS
    ]
    choose_variant(assigned) >> runs >> report(assigned)
