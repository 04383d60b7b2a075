"""``workflows.yaml``: the PAS workflows Airflow runs, one DAG per entry, checked on load.

Each entry is decoded into :class:`WorkflowDAG` (msgspec, unknown keys refused); an entry that
does not fit raises :class:`ConfigError` naming the entry and the field, so Airflow shows the
DAG file as an import error instead of silently leaving a DAG out. No Airflow import: PAS's
tests load the same file with the same types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

CONFIG_FILE = Path(__file__).resolve().parents[1] / "workflows.yaml"

DagId = Annotated[str, msgspec.Meta(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.-]+$")]
WorkflowId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 3600)]
AssetName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")]


class ConfigError(ValueError):
    """``workflows.yaml`` is not usable; the message names the entry and the field."""


class Retries(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Retries of a try that failed for a reason that may pass (no result in time, a broker
    away); a workflow that failed is final. Delays grow by ``backoff`` up to ``max_delay_s``."""

    count: Annotated[int, msgspec.Meta(ge=0, le=20)] = 3
    delay_s: Seconds = 60.0
    backoff: Annotated[float, msgspec.Meta(ge=1, le=10)] = 2.0
    max_delay_s: Seconds = 1800.0


class Notify(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a task that failed for good is reported (``pas_airflow.notify``); a connection
    that does not exist is skipped."""

    slack_conn_id: str | None = "pas_slack"
    smtp_conn_id: str | None = "pas_smtp"
    email: list[Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+$")]] = msgspec.field(
        default_factory=list
    )


class WorkflowDAG(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    dag_id: DagId
    workflow_id: WorkflowId
    payload: dict[str, Any]
    """The workflow's input (a manual run may pass another as ``conf.payload``)."""
    schedule: str | None = None
    """A cron expression (UTC, ``CronTriggerTimetable``), or none: manual runs only (or, with
    ``after``, runs when those assets are updated)."""
    after: list[AssetName] = msgspec.field(default_factory=list)
    """Run each time all these Airflow assets have been updated (asset scheduling)."""
    updates: list[AssetName] = msgspec.field(default_factory=list)
    """Assets a run updates when its workflow succeeds (the task's outlets)."""
    description: str = ""
    mode: Literal["kafka", "rest"] = "kafka"
    timeout_s: Seconds = 600.0
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    """What an experiment on the workflow keeps sticky (``metadata.unit``; the version manager
    takes 256 characters)."""
    tags: list[str] = msgspec.field(default_factory=list)
    retries: Retries = msgspec.field(default_factory=Retries)
    notify: Notify = msgspec.field(default_factory=Notify)


def load(path: Path = CONFIG_FILE) -> list[WorkflowDAG]:
    """Every entry of ``path``, checked; :class:`ConfigError` at the first that does not fit."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: cannot be read: {exc}") from exc
    entries = document.get("dags") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path.name}: expected a mapping with a `dags` list")
    found: list[WorkflowDAG] = []
    for number, entry in enumerate(entries, 1):
        name = entry.get("dag_id") if isinstance(entry, dict) else None
        where = f"{path.name}: entry {number} ({name or 'no dag_id'})"
        try:
            found.append(msgspec.convert(entry, WorkflowDAG))
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if any(earlier.dag_id == found[-1].dag_id for earlier in found[:-1]):
            raise ConfigError(f"{where}: `dag_id` {name!r} is used by an earlier entry")
        if found[-1].after and found[-1].schedule is not None:
            raise ConfigError(f"{where}: give `schedule` or `after`, not both")
    return found
