"""``pas trigger <workflow>``: start a run over the runner's REST API, or publish
``workflow.triggered`` to ``workflow-events`` (``--kafka``); with ``--wait``, its outcome."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
from aiokafka import AIOKafkaProducer

from libs.cli.runtime import err, pass_settings, run
from libs.cli.settings import CLISettings
from libs.cli.topic_reader import TopicReader
from libs.common.clients.runner import RunnerClient, RunnerError, RunnerRefused
from libs.common.kafka.records import send_acknowledged, stop_producer
from libs.common.schemas.documents import DeadLetter
from libs.common.schemas.workflows import (
    EVENT_TRIGGERED,
    TERMINAL_STATUSES,
    RunRequest,
    RunStatus,
    WorkflowResult,
    WorkflowTriggered,
)

SOURCE = "pas-cli"
POLL_S = 0.5
SETTLED = TERMINAL_STATUSES | {"interrupted"}

_decode_result = msgspec.json.Decoder(WorkflowResult).decode
_decode_letter = msgspec.json.Decoder(DeadLetter).decode


def parse_input(text: str) -> dict[str, Any]:
    """``--input``: a JSON object, or ``@file`` holding one."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise click.BadParameter(f"{path}: {exc.strerror}", param_hint="--input") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
    if not isinstance(value, dict):
        raise click.BadParameter("a JSON object, the workflow's input", param_hint="--input")
    return value


# -- over REST -------------------------------------------------------------------------------


async def start_over_rest(
    settings: CLISettings,
    workflow_id: str,
    payload: dict[str, Any],
    *,
    run_id: str | None,
    wait: bool,
    timeout_s: float,
) -> RunStatus:
    """``POST /workflows/{id}/runs`` (``wait=true`` when waiting: the runner answers once the
    run settles, up to its own limit); then ``GET /runs/{id}`` until it settles."""
    request = RunRequest(input=payload, run_id=run_id)
    try:
        async with RunnerClient(
            settings.runner_url, token=settings.runner_token, timeout_s=30.0
        ) as runner:
            try:
                status = await runner.start_run(
                    workflow_id, request, wait_s=timeout_s if wait else None
                )
            except RunnerRefused as exc:  # the run's own problem: unknown workflow, bad input
                raise click.ClickException(
                    f"the runner refused the run ({exc.status_code}): {exc.detail}"
                ) from exc
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            with err.status(f"run {status.run_id}: {status.status}") as spinner:
                while wait and status.status not in SETTLED and loop.time() < deadline:
                    await asyncio.sleep(POLL_S)
                    status = await runner.get_run(status.run_id)
                    spinner.update(f"run {status.run_id}: {status.status}")
    except RunnerError as exc:
        raise click.ClickException(str(exc)) from exc
    return status


# -- over Kafka ------------------------------------------------------------------------------


def triggered_event(workflow_id: str, payload: dict[str, Any]) -> WorkflowTriggered:
    """The event, checked against its schema here: a bad workflow id is said now rather than
    dead-lettered by the runner."""
    run = uuid.uuid4().hex
    event = {
        "event_id": f"{SOURCE}-{run}",
        "event_type": EVENT_TRIGGERED,
        "timestamp": datetime.now(UTC).isoformat(),
        "source": SOURCE,
        "workflow_id": workflow_id,
        "workflow_run_id": f"{SOURCE}-{run}",
        "payload": payload,
    }
    try:
        return msgspec.convert(event, WorkflowTriggered)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="WORKFLOW") from exc


async def trigger_over_kafka(
    settings: CLISettings, event: WorkflowTriggered, *, wait: bool, timeout_s: float
) -> WorkflowResult | DeadLetter | None:
    """Publish ``event``; when waiting, its result on the results topic (same ``event_id``),
    or its dead letter on the runner's DLQ, or ``None`` at the timeout."""
    topics = [settings.runner_results_topic, settings.runner_dlq_topic]
    async with TopicReader(settings.kafka_bootstrap_servers, topics if wait else []) as reader:
        await reader.from_end()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            sent = await send_acknowledged(
                producer,
                settings.runner_events_topic,
                event.workflow_run_id.encode(),
                msgspec.json.encode(event),
            )
        finally:
            await stop_producer(producer)
        err.print(f"published {event.event_id} as {sent.topic}/{sent.partition}/{sent.offset}")
        if not wait:
            return None
        with err.status(f"waiting on {settings.runner_results_topic}"):
            async for record in reader.following(timeout_s):
                try:
                    if record.topic == settings.runner_results_topic:
                        result = _decode_result(record.value or b"")
                        if result.event_id == event.event_id:
                            return result
                    else:
                        letter = _decode_letter(record.value or b"")
                        if (letter.topic, letter.partition, letter.offset) == (
                            sent.topic,
                            sent.partition,
                            sent.offset,
                        ):
                            return letter
                except msgspec.DecodeError:
                    continue  # not an answer to this event
    return None


def _print_json(value: object) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2))


@click.command()
@click.argument("workflow")
@click.option(
    "--input",
    "raw_input",
    default="{}",
    metavar="JSON|@FILE",
    help="The workflow's input: a JSON object, or @file holding one.",
)
@click.option("--wait", is_flag=True, help="Wait for the run's outcome (exit 1 unless success).")
@click.option("--kafka", is_flag=True, help="Publish workflow.triggered instead of REST.")
@click.option("--run-id", help="REST only: choose the run's id.")
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True)
@pass_settings
def trigger(
    settings: CLISettings,
    *,
    workflow: str,
    raw_input: str,
    wait: bool,
    kafka: bool,
    run_id: str | None,
    timeout_s: float,
) -> None:
    """Run WORKFLOW on the LangGraph runner (RUNNER_URL, RUNNER_TOKEN), or with --kafka through
    workflow-events (RUNNER_EVENTS_TOPIC), and print the run."""
    payload = parse_input(raw_input)
    if kafka:
        if run_id is not None:
            raise click.UsageError("--run-id is for REST; over Kafka the run's id is the event's")
        event = triggered_event(workflow, payload)
        outcome = run(
            trigger_over_kafka(settings, event, wait=wait, timeout_s=timeout_s),
            broker=settings.kafka_bootstrap_servers,
        )
        if not wait:
            click.echo(event.event_id)
            return
        if outcome is None:
            raise click.ClickException(f"no result for {event.event_id} within {timeout_s:g} s")
        _print_json(outcome)
        if isinstance(outcome, DeadLetter):
            raise click.ClickException(f"dead-lettered: {outcome.error_type}: {outcome.error}")
        if outcome.payload.omitted_output_bytes is not None:
            err.print(
                f"the output ({outcome.payload.omitted_output_bytes} bytes) was too large for "
                f"the event; the run has it: {settings.runner_url}/runs/{outcome.payload.run_id}"
            )
        if outcome.payload.status != "success":
            raise SystemExit(1)
        return
    status = run(
        start_over_rest(settings, workflow, payload, run_id=run_id, wait=wait, timeout_s=timeout_s)
    )
    _print_json(status)
    if wait and status.status != "success":
        err.print(f"run {status.run_id}: {status.status}")
        raise SystemExit(1)
