"""Check that each part of the running pipeline answers.

Run: ``.venv/bin/python -m scripts.test_pipeline`` (exit status 1 if any part does not).
"""

from __future__ import annotations

import asyncio
import sys

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from libs.common.kafka.topics import PAS_TOPICS
from libs.common.settings import load_settings_or_exit
from services.kafka_llm_processor.settings import ProcessorSettings

SERVICES = {
    "registry": "http://localhost:6121/health",
    "llama31_8b": "http://localhost:8050/health",
    "tinyllama": "http://localhost:8051/health",
    "tlc_classifier": "http://localhost:8052/health",
    "provider_router": "http://localhost:6103/health",
    "kafka_llm_processor": "http://localhost:6160/health",
    "langgraph_runner": "http://localhost:6130/health",
    "versioning": "http://localhost:6140/health",
    "analytics": "http://localhost:6150/health",
}


async def broker_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def main() -> int:
    settings = load_settings_or_exit(ProcessorSettings)
    failures = 0
    try:
        missing = set(PAS_TOPICS) - asyncio.run(broker_topics(settings.bootstrap_servers))
        status = f"topics missing: {sorted(missing)}" if missing else "all topics present"
        failures += bool(missing)
    except Exception as exc:
        status, failures = f"unreachable ({exc})", failures + 1
    print(f"{'kafka':<22} {settings.bootstrap_servers:<30} {status}")
    for name, url in SERVICES.items():
        try:
            body = httpx.get(url, timeout=3).json()
            status = body["status"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            status = f"unreachable ({type(exc).__name__})"
        failures += status != "healthy"
        print(f"{name:<22} {url:<30} {status}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
