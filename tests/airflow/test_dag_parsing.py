"""Real Airflow loads PAS's DAGs: no import errors, no deprecation warnings, and a DAG file that
cannot load is reported, not skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.airflow.airflow_cli import DAGS_FOLDER, Airflow, _json_part
from tests.airflow.conftest import dags_folder_with, needs_airflow

pytestmark = [*needs_airflow, pytest.mark.timeout(300)]

# Every .py file of dags/ that Airflow parses (.airflowignore leaves out the operators' package
# and the Kafka helpers, which are imported below instead).
DAG_FILES = sorted(p.name for p in DAGS_FOLDER.glob("*.py") if p.name != "pas_trigger.py")
PAS_DAGS = {
    "pas_document_analysis",
    "pas_market_brief",
    "pas_pre_trade_check",
    "pas_ab_test",
    "pas_on_llm_result",
}


def import_errors(airflow: Airflow) -> list[dict[str, str]]:
    """``list-import-errors`` (it exits 1 when there are some)."""
    listed = airflow.run("dags", "list-import-errors", "-o", "json")
    errors: list[dict[str, str]] = json.loads(_json_part(listed.output))
    assert listed.returncode == (1 if errors else 0), listed.output
    return errors


def test_airflow_serializes_every_dag_without_an_import_error(airflow: Airflow) -> None:
    airflow.run("dags", "reserialize").check()

    assert import_errors(airflow) == []
    listed = json.loads(_json_part(airflow.run("dags", "list", "-o", "json").check().output))
    assert {dag["dag_id"] for dag in listed} >= PAS_DAGS


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_a_dag_file_parses_with_warnings_as_errors(airflow: Airflow, dag_file: str) -> None:
    # As the dag-processor does: the DAGs folder on sys.path, the file run as a module.
    airflow.python(
        "-W",
        "error",
        "-c",
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); runpy.run_path(sys.argv[2])",
        str(DAGS_FOLDER),
        str(DAGS_FOLDER / dag_file),
    ).check()


def test_the_operators_import_with_warnings_as_errors(airflow: Airflow) -> None:
    airflow.python(
        "-W",
        "error",
        "-c",
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import pas_airflow.langgraph, pas_airflow.llm, pas_airflow.llm_results, "
        "pas_airflow.triggers, pas_trigger",
        str(DAGS_FOLDER),
    ).check()


def test_a_dag_file_that_cannot_load_is_an_import_error(tmp_path: Path) -> None:
    folder = dags_folder_with(
        tmp_path,
        {
            "pas_broken.py": "from airflow.sdk import DAG\n"
            "from pas_airflow import LangGraphOperator\n\n"
            'with DAG(dag_id="pas_broken", schedule=None):\n'
            '    LangGraphOperator(task_id="t", workflow_id="probe", input={}, version="canary")\n'
        },
    )
    airflow = Airflow.create(tmp_path / "airflow", dags_folder=folder)

    airflow.run("dags", "reserialize")

    errors = import_errors(airflow)
    assert [Path(e["filepath"]).name for e in errors] == ["pas_broken.py"]
    assert "version='canary' needs mode='rest'" in errors[0]["error"]


def test_a_workflows_yaml_entry_that_does_not_fit_is_an_import_error(tmp_path: Path) -> None:
    folder = dags_folder_with(tmp_path, {})
    config = folder / "workflows.yaml"
    config.write_text(
        config.read_text().replace('schedule: "0 6 * * 1-5"', 'schedule: "every morning"')
    )
    airflow = Airflow.create(tmp_path / "airflow", dags_folder=folder)

    airflow.run("dags", "reserialize")

    (error,) = import_errors(airflow)
    assert Path(error["filepath"]).name == "pas_workflows.py"
    named = "entry 1 (pas_document_analysis): `schedule` 'every morning' is not a cron expression"
    assert named in error["error"]
