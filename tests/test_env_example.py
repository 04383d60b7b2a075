"""``.env.example`` lists every variable PAS reads, and nothing it does not.

The variables are derived from the code: every settings Struct (a subclass of
``libs.common.settings.BaseSettings`` in ``libs/``, ``services/`` or ``scripts/``), each field
under its own name (``<PREFIX><FIELD>``) and under every alias in ``env_aliases``, exactly as
``load_settings`` reads them. Found in a fresh interpreter, with every module of those packages
imported, so that no Struct is missed and this test's own process is left alone.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys

from tests.support.processes import REPO_ROOT

ENV_EXAMPLE = REPO_ROOT / ".env.example"

# Listed in .env.example but read by no settings Struct: who reads each, instead.
READ_ELSEWHERE = {
    "PAS_HOME": "scripts/lib.sh: where PID files, logs and data go",
    "PAS_ENV_FILE": "libs/common/settings.py load_settings: which env file to read",
    "PAS_PYTHON": "scripts/lib.sh: the interpreter the start scripts run",
    "KAFKA_PORT": "scripts/start_kafka.sh and start_all.sh: the embedded broker's port",
    "ANTHROPIC_API_KEY": "the providers file names it (api_key_env); the router reads it",
    "PAS_TEST_POSTGRES_DSN": "tests: run the PostgreSQL store tests",
    "PAS_AIRFLOW_PORT": "scripts/setup_airflow.sh: the Airflow api-server's port",
    "PAS_AIRFLOW_HOME": "scripts/setup_airflow.sh: AIRFLOW_HOME",
    "PAS_AIRFLOW_VENV": "scripts/setup_airflow.sh: Airflow's own venv",
    "PAS_AIRFLOW_PYTHON": "scripts/setup_airflow.sh: the Python that makes Airflow's venv",
    "PAS_ALERT_EMAIL": "dags/pas_airflow/notify.py: where failure mail goes",
    "AIRFLOW_CONN_PAS_SLACK": "Airflow: the failure notifier's webhook connection",
    "AIRFLOW_CONN_PAS_SMTP": "Airflow: the failure notifier's SMTP connection",
}

_DISCOVER = """
import importlib, json, pkgutil, sys
import msgspec
import libs, scripts, services
from libs.common.settings import BaseSettings, env_names

for package in (libs, services, scripts):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as exc:
            # An optional third-party library (a database driver) may be absent; PAS's own
            # modules may not.
            if (exc.name or "").split(".")[0] in ("libs", "services", "scripts"):
                raise
            print(f"skipped {module.name}: {exc}", file=sys.stderr)

def loaded(cls):
    # A Struct with subclasses is a base (ServiceSettings, LLMServiceSettings): its fields
    # are read under its subclasses' prefixes.
    subclasses = cls.__subclasses__()
    if not subclasses:
        yield cls
    for subclass in subclasses:
        yield from loaded(subclass)

read = {}
for cls in set(loaded(BaseSettings)):
    for field in msgspec.structs.fields(cls):
        for variable in env_names(cls, field.name):
            read.setdefault(variable, []).append(f"{cls.__module__}.{cls.__name__}.{field.name}")
print(json.dumps(read))
"""
_LISTED = re.compile(r"^#?\s*(?P<name>[A-Z][A-Z0-9_]*)=", re.MULTILINE)


@functools.cache
def variables_read() -> dict[str, list[str]]:
    """Every variable a settings Struct reads -> the fields that read it."""
    found = subprocess.run(
        [sys.executable, "-c", _DISCOVER],
        cwd=REPO_ROOT,
        env={**os.environ, "PAS_ENV_FILE": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    read: dict[str, list[str]] = json.loads(found.stdout.splitlines()[-1])
    return read


def variables_listed() -> set[str]:
    return {match["name"] for match in _LISTED.finditer(ENV_EXAMPLE.read_text())}


def test_every_variable_read_is_in_env_example() -> None:
    read = variables_read()
    missing = {name: read[name] for name in sorted(set(read) - variables_listed())}

    assert "REGISTRY_TOKEN" in read, "the discovery found the settings Structs"
    assert not missing, (
        ".env.example lacks these variables (add each with its default or a placeholder): "
        + "; ".join(f"{name} ({', '.join(fields)})" for name, fields in missing.items())
    )


def test_env_example_lists_nothing_that_nobody_reads() -> None:
    stale = sorted(variables_listed() - set(variables_read()) - set(READ_ELSEWHERE))

    assert not stale, f".env.example lists variables nothing reads (remove them): {stale}"
