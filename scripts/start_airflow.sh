#!/usr/bin/env bash
# Start Apache Airflow 3 for PAS's DAGs: api-server (UI and REST on http://127.0.0.1:8080,
# user 'pas', password in .pas/airflow/simple_auth_manager_passwords.json.generated),
# scheduler (LocalExecutor, at most 4 task processes: two cores), dag-processor (parses dags/)
# and triggerer (where a deferred LangGraphOperator waits on Kafka). Each is a process of its
# own with its PID file in .pas/run/airflow-<component>.pid and its log in .pas/logs/, so
# `bash scripts/stop_all.sh` stops them with the rest of PAS.
#
# Needs `bash scripts/setup_airflow.sh` first. The DAGs reach PAS through
# KAFKA_BOOTSTRAP_SERVERS (default the local broker, 127.0.0.1:9092), RUNNER_URL, ROUTER_URL
# and VERSIONING_URL (defaults: this machine's ports), from the environment or .env.
# (`airflow standalone` runs the same four in one process tree, for a quick look.)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

AIRFLOW_VENV="${PAS_AIRFLOW_VENV:-$PAS_HOME/airflow-venv}"
export AIRFLOW_HOME="${PAS_AIRFLOW_HOME:-$PAS_HOME/airflow}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$PAS_HOST:${KAFKA_PORT:-9092}}"
# The Kafka connection of pas_on_llm_result's watcher (the triggerer's consumer of llm-results),
# unless the deployment defines it. session.timeout.ms: the embedded Tansu broker completes a
# consumer group's first join after half of it (23 s at librdkafka's default 45 s). "latest": a
# new group starts at the end of the topic rather than running the DAG once per old result.
if [ -z "${AIRFLOW_CONN_PAS_KAFKA:-}" ]; then
    export AIRFLOW_CONN_PAS_KAFKA='{"conn_type": "kafka", "extra": {"bootstrap.servers": "'"$KAFKA_BOOTSTRAP_SERVERS"'", "group.id": "pas-airflow-llm-results", "auto.offset.reset": "latest", "session.timeout.ms": 6000}}'
fi
AIRFLOW_PORT="${PAS_AIRFLOW_PORT:-8080}"
# The port may differ from airflow.cfg's: tasks reach the api-server where it listens.
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://$PAS_HOST:$AIRFLOW_PORT/execution/"
airflow="$AIRFLOW_VENV/bin/airflow"
# The triggerer imports a deferred task's trigger by class path (pas_airflow.triggers...), and
# unlike a task it does not put the DAGs folder on sys.path: every component gets it here.
dags_folder="${AIRFLOW__CORE__DAGS_FOLDER:-$PAS_ROOT/dags}"
export PYTHONPATH="$dags_folder${PYTHONPATH:+:$PYTHONPATH}"
if [ ! -x "$airflow" ] || [ ! -f "$AIRFLOW_HOME/airflow.cfg" ]; then
    echo "error: Airflow is not set up; run: bash scripts/setup_airflow.sh" >&2
    exit 1
fi

# airflow_healthy COMPONENT: the api-server answers and reports COMPONENT healthy (for the
# api-server itself, that it answers).
airflow_healthy() {
    "$AIRFLOW_VENV/bin/python" - "http://$PAS_HOST:$AIRFLOW_PORT/api/v2/monitor/health" "$1" \
        <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    health = json.load(response)
component = sys.argv[2]
sys.exit(0 if component == "api_server" or health[component]["status"] == "healthy" else 1)
PY
}

# What each component runs under: it starts `airflow ...` in a process group of its own and, on
# SIGTERM (stop_all.sh), passes SIGTERM to the whole group, then SIGKILLs whatever is left after
# 10 s (within stop_all.sh's 15 s). Airflow's own processes leave children behind otherwise (the
# scheduler's LocalExecutor workers and log server) and can miss a SIGTERM.
SUPERVISOR='
import os, signal, subprocess, sys, time
child = subprocess.Popen(sys.argv[1:], start_new_session=True, stdin=subprocess.DEVNULL)
deadline = None
def stop(signum, frame):
    global deadline
    if deadline is None:
        deadline = time.monotonic() + 10
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while (code := child.poll()) is None:
    if deadline is not None and time.monotonic() > deadline:
        os.killpg(child.pid, signal.SIGKILL)
    time.sleep(0.2)
try:
    os.killpg(child.pid, signal.SIGKILL)  # what the component left in its group
except ProcessLookupError:
    pass
sys.exit(0 if deadline is not None else code if code >= 0 else 128 - code)
'

# start_component NAME HEALTH_KEY ARGS...: `airflow ARGS` in the background (unless NAME runs
# already), then wait until the api-server reports it healthy.
start_component() {
    local name="airflow-$1" health="$2"
    shift 2
    if pas_pid_alive "$name"; then
        echo "$name already running (pid $(cat "$PAS_RUN_DIR/$name.pid"))"
        return 0
    fi
    (cd "$PAS_ROOT" && exec nohup "$AIRFLOW_VENV/bin/python" -c "$SUPERVISOR" "$airflow" "$@" \
        >>"$PAS_LOG_DIR/$name.log" 2>&1) &
    pas_record_pid "$name" $!
    # Airflow components take a while to import and to send their first heartbeat.
    local waited=0
    until airflow_healthy "$health"; do
        if ! pas_pid_alive "$name"; then
            echo "error: $name exited during start; last lines of $PAS_LOG_DIR/$name.log:" >&2
            tail -n 20 "$PAS_LOG_DIR/$name.log" >&2
            rm -f "$PAS_RUN_DIR/$name.pid"
            return 1
        fi
        if [ "$waited" -ge 240 ]; then
            echo "error: $name not healthy within 120 s; see $PAS_LOG_DIR/$name.log" >&2
            return 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    echo "$name up (pid $(cat "$PAS_RUN_DIR/$name.pid"), log $PAS_LOG_DIR/$name.log)"
}

if ! pas_pid_alive airflow-api-server && pas_port_taken "$AIRFLOW_PORT"; then
    echo "error: port $AIRFLOW_PORT is taken, so Airflow's api-server cannot start there." >&2
    echo "       See what holds it with: ss -ltnp 'sport = :$AIRFLOW_PORT'" >&2
    echo "       or choose another with PAS_AIRFLOW_PORT (in .env)." >&2
    exit 1
fi
start_component api-server api_server api-server --host "$PAS_HOST" --port "$AIRFLOW_PORT"
# The execution API (what tasks call) is built on its first request, which takes seconds: build
# it now rather than on a task's clock.
"$AIRFLOW_VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=120)' \
    "http://$PAS_HOST:$AIRFLOW_PORT/execution/health" >/dev/null
start_component dag-processor dag_processor dag-processor
start_component scheduler scheduler scheduler
start_component triggerer triggerer triggerer
echo "Airflow on http://$PAS_HOST:$AIRFLOW_PORT (user pas, password in" \
    "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
