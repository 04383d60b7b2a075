#!/usr/bin/env bash
# Apache Airflow 3 for PAS's DAGs, in a virtualenv of its own (.pas/airflow-venv): Airflow pins
# libraries PAS's .venv cannot share, and PAS never imports Airflow.
#
#   bash scripts/setup_airflow.sh          # install (first time ~2 min), configure, migrate
#   bash scripts/setup_airflow.sh --lock   # re-resolve dags/requirements.txt into a fresh venv
#                                          # and write the pins to dags/constraints.txt
#
# What it leaves:
#   .pas/airflow-venv/   Airflow 3.3, its providers, aiokafka and msgspec (dags/requirements.txt,
#                        pinned by dags/constraints.txt, so every machine gets the same set)
#   .pas/airflow/        AIRFLOW_HOME: airflow.cfg (DAGs folder dags/, no examples, SQLite
#                        metadata, LocalExecutor sized for two cores, api-server on 127.0.0.1),
#                        airflow.db, logs/, and the secrets the components share
#
# Re-running is cheap: pip runs only when the requirements, the constraints or the Python
# changed (a stamp holds their hash); airflow.cfg is rewritten every time (keeping its secrets);
# `airflow db migrate` runs when the install changed or the database is missing.
# Use it: `export AIRFLOW_HOME=$PWD/.pas/airflow; .pas/airflow-venv/bin/airflow dags list`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

AIRFLOW_VENV="${PAS_AIRFLOW_VENV:-$PAS_HOME/airflow-venv}"
export AIRFLOW_HOME="${PAS_AIRFLOW_HOME:-$PAS_HOME/airflow}"
AIRFLOW_PORT="${PAS_AIRFLOW_PORT:-8080}"
requirements="$PAS_ROOT/dags/requirements.txt"
constraints="$PAS_ROOT/dags/constraints.txt"
log="$PAS_LOG_DIR/setup_airflow.log"

# Airflow 3.3 runs on Python 3.10 to 3.13; 3.11 is what PAS uses.
python="${PAS_AIRFLOW_PYTHON:-}"
if [ -z "$python" ]; then
    for candidate in python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
    done
fi
if ! "$python" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))'; then
    echo "error: Airflow 3.3 needs Python 3.10 to 3.13; $python is $("$python" --version 2>&1)" >&2
    exit 1
fi

fail() {
    tail -n 40 "$log" >&2
    echo "error: $1; the whole log is in $log" >&2
    exit 1
}

if [ "${1:-}" = "--lock" ]; then
    lock_venv="$(mktemp -d)/venv"
    echo "resolving $requirements in a fresh venv to write $constraints..."
    { "$python" -m venv "$lock_venv" &&
      "$lock_venv/bin/python" -m pip install --upgrade pip &&
      "$lock_venv/bin/python" -m pip install -r "$requirements"; } >"$log" 2>&1 \
        || fail "resolving the Airflow requirements failed"
    {
        echo "# Pins for dags/requirements.txt, written by 'bash scripts/setup_airflow.sh --lock'"
        echo "# ($("$lock_venv/bin/python" --version), $(date -u +%Y-%m-%d)). Edit requirements.txt, then re-lock."
        "$lock_venv/bin/python" -m pip freeze --all | grep -v -E '^(pip|setuptools|wheel)=='
    } >"$constraints"
    rm -rf "$(dirname "$lock_venv")"
    echo "wrote $constraints; run this script again (without --lock) to install it"
    exit 0
fi

# -- install ----------------------------------------------------------------------------------
wanted="$(cat "$requirements" "$constraints" 2>/dev/null | sha256sum | cut -d' ' -f1) $("$python" --version 2>&1)"
stamp="$AIRFLOW_VENV/.pas-installed"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "installing Airflow into $AIRFLOW_VENV (about two minutes the first time)..."
    [ -x "$AIRFLOW_VENV/bin/python" ] || "$python" -m venv "$AIRFLOW_VENV"
    pin=()
    [ -f "$constraints" ] && pin=(-c "$constraints")
    { "$AIRFLOW_VENV/bin/python" -m pip install --upgrade pip &&
      "$AIRFLOW_VENV/bin/python" -m pip install -r "$requirements" "${pin[@]}"; } >"$log" 2>&1 \
        || fail "installing Airflow failed"
    echo "$wanted" >"$stamp"
fi

# -- configure --------------------------------------------------------------------------------
mkdir -p "$AIRFLOW_HOME"
chmod 700 "$AIRFLOW_HOME"
secrets="$AIRFLOW_HOME/secrets.env"
if [ ! -f "$secrets" ]; then
    # One set for every component: the api-server signs task tokens that the workers present.
    (umask 077 && "$AIRFLOW_VENV/bin/python" - >"$secrets" <<'PY'
import base64, secrets
print(f"FERNET_KEY={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")
print(f"JWT_SECRET={secrets.token_urlsafe(64)}")  # HS512 wants 64+ bytes
print(f"API_SECRET_KEY={secrets.token_urlsafe(32)}")
PY
    )
fi
# shellcheck disable=SC1090
. "$secrets"
cat >"$AIRFLOW_HOME/airflow.cfg" <<EOF
# Written by scripts/setup_airflow.sh on every run: edit the script, not this file
# (or override any key with AIRFLOW__SECTION__KEY in the environment).
[core]
dags_folder = $PAS_ROOT/dags
load_examples = False
default_timezone = utc
executor = LocalExecutor
# Two cores: a few task processes at once. A LangGraphOperator waiting on Kafka holds no slot
# (it is deferred to the triggerer).
parallelism = 4
max_active_tasks_per_dag = 4
max_active_runs_per_dag = 4
execution_api_server_url = http://127.0.0.1:$AIRFLOW_PORT/execution/
fernet_key = $FERNET_KEY
# The api-server's users: 'pas' (admin); its password is generated into
# simple_auth_manager_passwords.json.generated here on the first start.
simple_auth_manager_users = pas:admin

[database]
sql_alchemy_conn = sqlite:///$AIRFLOW_HOME/airflow.db

[logging]
base_log_folder = $AIRFLOW_HOME/logs

[api]
host = 127.0.0.1
port = $AIRFLOW_PORT
workers = 1
secret_key = $API_SECRET_KEY

[api_auth]
jwt_secret = $JWT_SECRET

[workers]
# Two busy cores: the api-server may take seconds to answer a task's first call (it builds the
# execution API on first use); the default 5 s fails such a try before it starts.
execution_api_timeout = 30

[dag_processor]
parsing_processes = 1

[triggerer]
capacity = 200
EOF

# -- metadata database ------------------------------------------------------------------------
migrated="$AIRFLOW_HOME/.pas-migrated"
if [ ! -f "$AIRFLOW_HOME/airflow.db" ] || [ "$(cat "$migrated" 2>/dev/null)" != "$wanted" ]; then
    echo "migrating Airflow's metadata database ($AIRFLOW_HOME/airflow.db)..."
    "$AIRFLOW_VENV/bin/airflow" db migrate >>"$log" 2>&1 || fail "airflow db migrate failed"
    echo "$wanted" >"$migrated"
fi
echo "Airflow $("$AIRFLOW_VENV/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))') ready:" \
    "AIRFLOW_HOME=$AIRFLOW_HOME $AIRFLOW_VENV/bin/airflow"
