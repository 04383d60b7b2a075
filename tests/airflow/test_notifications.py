"""A task that fails for good notifies once, on a Slack-compatible webhook and by mail, however
many tries it took, each retry after a longer delay; configured by Airflow connections, as an
operator would."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.airflow.airflow_cli import Airflow
from tests.airflow.conftest import dags_folder_with, needs_airflow
from tests.support.receivers import SmtpSink, WebhookReceiver

pytestmark = [*needs_airflow, pytest.mark.timeout(600)]

FAILING_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import DAG, task
from pas_airflow import PASFailureNotifier

with DAG(
    dag_id="pas_test_failing",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=4),
        "on_failure_callback": PASFailureNotifier(to="desk@pas.invalid"),
    },
) as failing:

    @task
    def fetch_prices() -> None:
        raise ValueError("the desk feed is down (on purpose)")

    fetch_prices()
"""


def test_a_task_that_fails_for_good_notifies_once_on_each_receiver(tmp_path: Path) -> None:
    airflow = Airflow.create(
        tmp_path / "airflow", dags_folder=dags_folder_with(tmp_path, {"failing.py": FAILING_DAG})
    )

    with WebhookReceiver() as hook, SmtpSink() as mail:
        connections = {
            "AIRFLOW_CONN_PAS_SLACK": json.dumps(
                {"conn_type": "slackwebhook", "host": hook.url, "password": "/services/T0/B0/X0"}
            ),
            "AIRFLOW_CONN_PAS_SMTP": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": mail.port,
                    "extra": {
                        "from_email": "airflow@pas.invalid",
                        "disable_tls": True,
                        "disable_ssl": True,
                    },
                }
            ),
        }
        done = airflow.run("dags", "test", "pas_test_failing", timeout_s=420, env=connections)

    (run,) = airflow.dag_runs("pas_test_failing")
    assert run["state"] == "failed", done.output[-6000:]
    tries = airflow.task_tries("pas_test_failing", "fetch_prices")
    assert [t["try_number"] for t in tries] == [1, 2, 3]
    # Each retry waited at least its backoff, doubling per try: retry_delay 1 s, then 2 s
    # (Airflow adds jitter upwards only, and max_retry_delay caps it at 4 s).
    waits = [
        (_moment(later["start_date"]) - _moment(earlier["end_date"])).total_seconds()
        for earlier, later in itertools.pairwise(tries)
    ]
    assert waits[0] >= 1, waits
    assert waits[1] >= 2, waits
    assert len(hook.received) == 1, hook.received
    ((path, post),) = hook.received
    assert path == "/services/T0/B0/X0"
    assert "PAS: pas_test_failing.fetch_prices failed" in post["text"]
    assert "ValueError: the desk feed is down (on purpose)" in post["text"]
    assert len(mail.mails) == 1
    (message,) = mail.mails
    assert message["Subject"] == "PAS: pas_test_failing.fetch_prices failed"
    assert message["To"] == "desk@pas.invalid"
    assert message["From"] == "airflow@pas.invalid"


def _moment(stored: str) -> datetime:
    """A timestamp as Airflow's SQLite metadata holds it (UTC, with or without its zone)."""
    moment = datetime.fromisoformat(stored)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
