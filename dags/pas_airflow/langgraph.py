"""``LangGraphOperator``: run a PAS workflow on the LangGraph runner from an Airflow task.

``mode="kafka"`` (default): publish ``workflow.triggered`` to ``workflow-events`` and defer to
:class:`~pas_airflow.triggers.WorkflowResultTrigger`, which waits in the triggerer for the
``workflow.completed``/``workflow.failed`` with the same ``event_id`` on ``workflow-results``:
no worker slot is held while the workflow runs. ``mode="rest"``: ``POST
/workflows/{id}/runs?wait=true`` on the runner, polling ``GET /runs/{id}`` past the runner's
wait (the task holds its slot meanwhile).

Either way the task returns the run's output (XCom ``return_value``) and pushes ``run`` (run id,
status, steps, usage, the workflow version it ran and, under an experiment, its variant), and
names that version in the DAG run's note (:mod:`pas_airflow.run_note`); a
workflow that fails fails the task without retries (its error is final: clear the task to run it
again), and no result in time fails it with retries (the run may still be going). Each try is a
new run: the event id (and in REST mode the run id) comes from the task try, so a try that is
re-sent runs once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, Literal

import httpx
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pas_trigger import (
    KafkaTarget,
    build_trigger,
    event_id_for,
    trigger_workflow,
    workflow_run_id_for,
)

from pas_airflow.run_note import version_line, write_note
from pas_airflow.service_calls import json_answer
from pas_airflow.triggers import WorkflowResultTrigger
from pas_airflow.wire import (
    RUNNER_PORT,
    VERSIONING_PORT,
    bearer,
    check,
    service_url,
)

TERMINAL = ("success", "error", "cancelled")
_MIN_TOKENS, _MAX_TOKENS = 16, 8192  # the runner's bounds on WorkflowParameters.max_tokens


class LangGraphOperator(BaseOperator):
    """Run ``workflow_id`` on ``input`` (a dict, templated) on the PAS LangGraph runner.

    :param workflow_id: a workflow the runner serves (``GET /workflows``).
    :param input: the workflow's input; templated (with ``render_template_as_native_obj`` on the
        DAG, ``"{{ params.payload }}"`` stays a dict).
    :param version: ``None``: the runner decides (the version manager's champion, or the variant
        an experiment assigns to ``unit``). A version number or an alias (``"champion"``,
        ``"canary"``): that version's definition, read from the version manager
        (``VERSIONING_URL``) and sent as the run's parameters; needs ``mode="rest"``, since a
        ``workflow.triggered`` event carries no parameters.
    :param unit: what an experiment keeps sticky (a document, a desk); ``metadata.unit``.
    :param metadata: recorded with the run (and in its result event); a mapping, or a template
        that renders to one (``"{{ ti.xcom_pull(task_ids='assign') }}"``).
    :param mode: ``"kafka"`` (defer on ``workflow-results``) or ``"rest"``.
    :param timeout: how long the workflow may take before the task fails (and retries).
    :param bootstrap_servers: Kafka brokers; default ``KAFKA_BOOTSTRAP_SERVERS`` of the worker.
    :param runner_url: default ``RUNNER_URL``, else ``http://127.0.0.1:6130``; token from
        ``RUNNER_TOKEN``.
    """

    template_fields: Sequence[str] = ("workflow_id", "input", "version", "unit", "metadata")
    template_fields_renderers: ClassVar[dict[str, str]] = {"input": "json", "metadata": "json"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        workflow_id: str,
        input: Mapping[str, Any] | str,
        version: int | str | None = None,
        unit: str | None = None,
        metadata: Mapping[str, Any] | str | None = None,
        mode: Literal["kafka", "rest"] = "kafka",
        timeout: timedelta = timedelta(minutes=10),
        poll_interval: timedelta = timedelta(seconds=2),
        bootstrap_servers: str | None = None,
        runner_url: str | None = None,
        versioning_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("kafka", "rest"):
            raise ValueError(f"mode must be 'kafka' or 'rest', not {mode!r}")
        if version is not None and mode != "rest":
            raise ValueError(
                f"{self.task_id}: version={version!r} needs mode='rest' (a workflow.triggered "
                "event carries no parameters; over Kafka the runner picks the champion or the "
                "experiment's variant)"
            )
        self.workflow_id = workflow_id
        self.input = input
        self.version = version
        self.unit = unit
        # A string is a template that renders to a mapping (an upstream task's XCom).
        self.metadata = metadata if isinstance(metadata, str) else dict(metadata or {})
        self.mode = mode
        self.timeout_s = timeout.total_seconds()
        self.poll_interval_s = poll_interval.total_seconds()
        self.bootstrap_servers = bootstrap_servers
        self.runner_url = runner_url
        self.versioning_url = versioning_url

    # -- both modes -----------------------------------------------------------------------------

    def _ids(self, context: Context) -> tuple[str, str, dict[str, Any]]:
        ti = context["ti"]
        run_id = context["run_id"]
        event_id = event_id_for(ti.dag_id, run_id, ti.task_id, ti.try_number)
        if not isinstance(self.metadata, Mapping):
            raise AirflowFailException(
                f"metadata of {self.task_id} must be a mapping, got {type(self.metadata).__name__}"
            )
        metadata = {
            **self.metadata,
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "try": ti.try_number,
        }
        if self.unit is not None:
            metadata["unit"] = self.unit
        return workflow_run_id_for(ti.dag_id, run_id), event_id, metadata

    def _input(self) -> dict[str, Any]:
        if not isinstance(self.input, Mapping):
            raise AirflowFailException(
                f"input of {self.task_id} must be a mapping, got {type(self.input).__name__}"
                " (a templated input needs render_template_as_native_obj=True on the DAG)"
            )
        return dict(self.input)

    def execute(self, context: Context) -> Any:
        if self.mode == "rest":
            return self._run_over_rest(context)
        workflow_run_id, event_id, metadata = self._ids(context)
        event = build_trigger(
            self.workflow_id,
            self._input(),
            workflow_run_id=workflow_run_id,
            event_id=event_id,
            metadata=metadata,
        )
        check("workflow_triggered", event)
        target = (
            KafkaTarget.from_env()
            if self.bootstrap_servers is None
            else KafkaTarget.from_env({"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers})
        )
        receipt = trigger_workflow(target, event)
        self.log.info(
            "published %s to %s (event %s); deferring until its result",
            self.workflow_id,
            target.events_topic,
            event_id,
        )
        self.defer(
            trigger=WorkflowResultTrigger(
                receipt=receipt,
                bootstrap_servers=target.bootstrap_servers,
                results_topic=target.results_topic,
                timeout_s=self.timeout_s,
            ),
            method_name="execute_complete",
            # The trigger answers "timeout" itself; this only bounds a triggerer that died.
            timeout=timedelta(seconds=self.timeout_s + 120),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Back from the trigger: the workflow's output, or the task fails with its reason."""
        if event["status"] == "failed":
            raise AirflowFailException(event["reason"])
        if event["status"] != "completed":
            raise AirflowException(event["reason"])  # a timeout: retried
        result = event["result"]
        outcome = result["payload"]
        meta = result.get("metadata", {})
        output = outcome.get("output")
        if outcome.get("omitted_output_bytes") is not None:
            output = self._output_of(outcome["run_id"], outcome["omitted_output_bytes"])
        return self._conclude(
            context,
            {
                "run_id": outcome["run_id"],
                "status": outcome["status"],
                "event_id": result["event_id"],
                "workflow_run_id": result["workflow_run_id"],
                "steps": outcome.get("steps"),
                "duration_ms": outcome.get("duration_ms"),
                "usage": outcome.get("usage"),
                "workflow_version": meta.get("workflow_version")
                or outcome.get("parameters_version"),
                **{k: meta[k] for k in ("experiment_id", "variant", "unit") if k in meta},
            },
            output,
        )

    def _output_of(self, run_id: str, size: int) -> Any:
        """The output a result event left out (too large for a Kafka record), from the run."""
        base = self.runner_url or service_url("RUNNER_URL", RUNNER_PORT)
        self.log.info(
            "run %s: output of %d bytes not in its event; reading it from %s", run_id, size, base
        )
        with httpx.Client(base_url=base, headers=bearer("RUNNER_TOKEN"), timeout=60) as client:
            run = json_answer(client.get(f"/runs/{run_id}"), f"reading run {run_id}")
        return run.get("output")

    def _conclude(self, context: Context, run: dict[str, Any], output: Any) -> Any:
        ti = context["ti"]
        ti.xcom_push(key="run", value=run)
        # Which version ran (the champion, or the experiment's variant) is what tells two runs
        # of one DAG apart: it goes where people look at a run, its note.
        write_note(
            ti.dag_id,
            context["run_id"],
            ti.task_id,
            version_line(ti.task_id, self.workflow_id, run),
        )
        self.log.info(
            "workflow %s run %s: %s (version %s)",
            self.workflow_id,
            run["run_id"],
            run["status"],
            run.get("workflow_version"),
        )
        return output

    # -- REST -----------------------------------------------------------------------------------

    def _run_over_rest(self, context: Context) -> Any:
        workflow_run_id, event_id, metadata = self._ids(context)
        run_id = event_id  # one run per task try; the runner refuses a taken id (409)
        body: dict[str, Any] = {
            "input": self._input(),
            "run_id": run_id,
            "metadata": {**metadata, "workflow_run_id": workflow_run_id},
        }
        if self.version is not None:
            body["parameters"] = self._pinned_parameters()
        check("run_request", body)
        base = self.runner_url or service_url("RUNNER_URL", RUNNER_PORT)
        deadline = time.monotonic() + self.timeout_s
        with httpx.Client(
            base_url=base, headers=bearer("RUNNER_TOKEN"), timeout=self.timeout_s + 30
        ) as client:
            response = client.post(
                f"/workflows/{self.workflow_id}/runs", params={"wait": "true"}, json=body
            )
            if response.status_code == 409:  # this try's run exists: wait for it
                response = client.get(f"/runs/{run_id}")
            run = json_answer(response, f"starting {self.workflow_id} on {base}")
            while run["status"] not in TERMINAL:
                if time.monotonic() > deadline:
                    raise AirflowException(
                        f"workflow {self.workflow_id} run {run_id} still {run['status']} after "
                        f"{self.timeout_s:g} s"
                    )
                time.sleep(self.poll_interval_s)
                run = json_answer(client.get(f"/runs/{run_id}"), f"reading run {run_id}")
        if run["status"] != "success":
            raise AirflowFailException(
                f"workflow {self.workflow_id!r} run {run_id!r} {run['status']}: {run.get('error')}"
            )
        meta = run.get("metadata", {})
        return self._conclude(
            context,
            {
                "run_id": run_id,
                "status": run["status"],
                "workflow_run_id": workflow_run_id,
                "steps": run.get("steps"),
                "usage": run.get("usage"),
                "workflow_version": meta.get("workflow_version")
                or run.get("parameters", {}).get("version"),
                **{k: meta[k] for k in ("experiment_id", "variant", "unit") if k in meta},
            },
            run.get("output"),
        )

    def _pinned_parameters(self) -> dict[str, Any]:
        """The run's parameters from version ``self.version`` (a number or an alias) of the
        workflow in the version manager, as the runner itself takes them from there."""
        base = self.versioning_url or service_url("VERSIONING_URL", VERSIONING_PORT)
        path = f"/workflows/{self.workflow_id}"
        pinned = str(self.version)
        with httpx.Client(base_url=base, headers=bearer("VERSIONING_TOKEN"), timeout=30) as client:
            if pinned.isdigit():
                response = client.get(f"{path}/versions/{pinned}")
            else:
                response = client.get(path, params={"alias": pinned})
        found = json_answer(response, f"reading version {pinned} of {self.workflow_id} from {base}")
        definition = found["definition"]
        generation = definition.get("parameters") or {}
        max_tokens = generation.get("max_tokens")
        model = definition.get("model")
        parameters = {
            "version": str(found["version"]),
            "model": model,
            # The definition's rule: its capability is asked only when it names no model.
            "capability": definition.get("capability") if model is None else None,
            "temperature": generation.get("temperature"),
            "top_p": generation.get("top_p"),
            "max_tokens": None
            if max_tokens is None
            else min(max(max_tokens, _MIN_TOKENS), _MAX_TOKENS),
            "seed": generation.get("seed"),
            # An empty stop sequence (an older version manager serves one) is left out, as the
            # runner reads it (libs/common/schemas/empty_stops.py): its run request refuses it.
            "stop": [stop for stop in generation.get("stop") or [] if stop] or None,
            "timeout_s": generation.get("timeout_s"),
            "prompts": dict(definition.get("prompts") or {}),
        }
        return {k: v for k, v in parameters.items() if v is not None}
