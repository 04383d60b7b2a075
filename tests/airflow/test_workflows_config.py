"""``dags/workflows.yaml``: every entry runs a workflow the runner serves, on input the runner
accepts; an entry that does not fit is refused naming the entry and the field. No Airflow needed
(``dags/pas_airflow/config.py`` has no Airflow import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dags.pas_airflow.config import ConfigError, load
from services.langgraph_runner.catalog import Catalog, build_deps
from services.langgraph_runner.settings import RunnerSettings

GOOD_ENTRY = """
  - dag_id: pas_digest
    workflow_id: document_analysis
    payload: {content: text}
"""


def config(tmp_path: Path, entries: str) -> Path:
    path = tmp_path / "workflows.yaml"
    path.write_text(f"dags:{entries}")
    return path


def test_every_entry_runs_a_cataloged_workflow_on_input_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAS_ENV_FILE", "")
    settings = RunnerSettings()
    catalog = Catalog.from_settings(settings, build_deps(settings))
    entries = load()

    assert {e.dag_id for e in entries} >= {"pas_document_analysis", "pas_market_brief"}
    for entry in entries:
        workflow = catalog.get(entry.workflow_id)
        workflow.spec.validate(entry.payload, catalog.deps)  # raises if invalid


def test_defaults_fill_what_an_entry_leaves_out(tmp_path: Path) -> None:
    (entry,) = load(config(tmp_path, GOOD_ENTRY))

    assert entry.schedule is None
    assert entry.mode == "kafka"
    assert (entry.retries.count, entry.retries.backoff) == (3, 2.0)
    assert entry.notify.slack_conn_id == "pas_slack"


def entry(*lines: str) -> str:
    return "".join(f"\n    {line}" for line in lines).replace("\n    - ", "\n  - ", 1)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (
            entry(
                "- dag_id: pas_x",
                "workflow_id: document_analysis",
                "payload: {}",
                "timeout_s: soon",
            ),
            "entry 2 (pas_x): Expected `float`, got `str` - at `$.timeout_s`",
        ),
        (
            entry(
                "- dag_id: pas_x",
                "workflow_id: document_analysis",
                "payload: {}",
                "retries: {count: 3, delay: 5}",
            ),
            "entry 2 (pas_x): Object contains unknown field `delay` - at `$.retries`",
        ),
        (
            entry("- dag_id: pas_x", "payload: {}"),
            "entry 2 (pas_x): Object missing required field `workflow_id`",
        ),
        (
            # The version manager takes 256: each try of the task was a dead letter.
            entry(
                "- dag_id: pas_x",
                "workflow_id: document_analysis",
                "payload: {}",
                f"unit: {'u' * 257}",
            ),
            "entry 2 (pas_x): Expected `str` of length <= 256 - at `$.unit`",
        ),
        (
            entry(
                "- dag_id: pas_x",
                "workflow_id: supervisor",
                "payload: {}",
                'schedule: "0 6 * * *"',
                "after: [pas_digest_done]",
            ),
            "entry 2 (pas_x): give `schedule` or `after`, not both",
        ),
        (
            entry("- dag_id: pas_digest", "workflow_id: supervisor", "payload: {}"),
            "entry 2 (pas_digest): `dag_id` 'pas_digest' is used by an earlier entry",
        ),
    ],
)
def test_an_entry_that_does_not_fit_is_refused_by_entry_and_field(
    tmp_path: Path, bad: str, named: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load(config(tmp_path, GOOD_ENTRY + bad + "\n"))

    assert f"workflows.yaml: {named}" in str(refused.value)
