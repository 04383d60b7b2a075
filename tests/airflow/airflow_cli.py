"""Real Airflow from PAS's tests: the ``airflow`` CLI and Python of ``.pas/airflow-venv``
(``scripts/setup_airflow.sh``), each command in a process group of its own with a deadline.

``airflow dags test`` ignores SIGTERM, so a command past its deadline has its whole group
killed (SIGKILL) and the test fails with what it printed. Every test gets an Airflow of its own:
the configuration of ``.pas/airflow`` (secrets included) with the metadata database copied to
the test's directory, its own logs, and optionally its own DAGs folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import REPO_ROOT

AIRFLOW_VENV = REPO_ROOT / ".pas" / "airflow-venv"
AIRFLOW_HOME = REPO_ROOT / ".pas" / "airflow"
DAGS_FOLDER = REPO_ROOT / "dags"


def airflow_installed() -> bool:
    return (AIRFLOW_VENV / "bin" / "airflow").exists() and (AIRFLOW_HOME / "airflow.db").exists()


class AirflowCommandFailed(AssertionError):
    pass


@dataclass(frozen=True)
class Completed:
    args: Sequence[str]
    returncode: int
    output: str
    process_group: int

    def check(self) -> Completed:
        if self.returncode != 0:
            raise AirflowCommandFailed(
                f"{' '.join(self.args)} exited {self.returncode}:\n{self.output[-8000:]}"
            )
        return self


@dataclass
class Airflow:
    """One isolated Airflow: ``run("dags", "list")``, ``python(code)``."""

    root: Path
    dags_folder: Path = DAGS_FOLDER
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, dags_folder: Path = DAGS_FOLDER, **env: str) -> Airflow:
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(AIRFLOW_HOME / "airflow.db", root / "airflow.db")
        return cls(root=root, dags_folder=dags_folder, env=dict(env))

    @property
    def database(self) -> Path:
        return self.root / "airflow.db"

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "AIRFLOW_HOME": str(AIRFLOW_HOME),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.database}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.root / "logs"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "PAS_ENV_FILE": "",
            **self.env,
            **(extra or {}),
        }

    def run(
        self, *args: str, timeout_s: float = 120, env: Mapping[str, str] | None = None
    ) -> Completed:
        return run_in_group(
            [str(AIRFLOW_VENV / "bin" / "airflow"), *args],
            self.environment(env),
            timeout_s,
            cwd=self.root,
        )

    def python(
        self, *args: str, timeout_s: float = 120, env: Mapping[str, str] | None = None
    ) -> Completed:
        return run_in_group(
            [str(AIRFLOW_VENV / "bin" / "python"), *args],
            self.environment(env),
            timeout_s,
            cwd=self.root,
        )

    # -- reading what Airflow recorded ---------------------------------------------------------

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs (run_id, state, run_type), newest first, from the metadata database:
        what ``airflow dags list-runs`` shows, without starting Airflow (15-20 s a call)."""
        with sqlite3.connect(self.database) as db:
            db.row_factory = sqlite3.Row
            return [
                dict(row)
                for row in db.execute(
                    "SELECT run_id, state, run_type FROM dag_run WHERE dag_id = ? ORDER BY id DESC",
                    (dag_id,),
                )
            ]

    def xcom(self, dag_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom as the task pushed it (from the metadata database)."""
        with sqlite3.connect(self.database) as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ?"
                " ORDER BY timestamp DESC LIMIT 1",
                (dag_id, task_id, key),
            ).fetchone()
        if row is None:
            raise AssertionError(f"no XCom {key!r} of {dag_id}.{task_id}")
        value = row[0]
        return json.loads(value) if isinstance(value, str | bytes) else value

    def task_tries(self, dag_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of the task (task_instance_history plus the current one): state and
        try_number, oldest first."""
        with sqlite3.connect(self.database) as db:
            db.row_factory = sqlite3.Row
            rows = [
                dict(row)
                for table in ("task_instance_history", "task_instance")
                for row in db.execute(
                    f"SELECT try_number, state, start_date, end_date FROM {table}"
                    " WHERE dag_id = ? AND task_id = ?",
                    (dag_id, task_id),
                )
            ]
        return sorted(rows, key=lambda r: r["try_number"])


def _json_part(output: str) -> str:
    """The JSON document in a CLI's output (Airflow may log lines around it)."""
    for line in output.splitlines():
        if line.startswith(("[", "{")):
            return line
    raise AssertionError(f"no JSON in:\n{output[-4000:]}")


def run_in_group(
    command: Sequence[str],
    env: Mapping[str, str],
    timeout_s: float,
    cwd: Path,
    *,
    leave_running: bool = False,
) -> Completed:
    """Run ``command`` in a new session (its own process group); past ``timeout_s`` the whole
    group is killed and the output so far is in the error. Once it has exited, what it left in
    its group is killed too, unless ``leave_running`` (a start script's daemons: the caller
    stops them, and kills ``process_group`` last)."""
    process = subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AirflowCommandFailed(
            f"{' '.join(command)} still running after {timeout_s:g} s; killed its process "
            f"group. Output:\n{output.decode(errors='replace')[-8000:]}"
        ) from None
    except BaseException:  # interrupted (KeyboardInterrupt, pytest-timeout): the command too
        leave_running = False
        raise
    finally:
        # Whatever the command left behind in its group (a task process, a stray child) goes
        # with it.
        if not leave_running:
            kill_group(process.pid)
        process.wait()
    return Completed(command, process.returncode, output.decode(errors="replace"), process.pid)


def kill_group(process_group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process_group, signal.SIGKILL)
