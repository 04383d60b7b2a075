"""``python -m services.kafka_llm_processor``: the processor with /health and /metrics."""

from __future__ import annotations

import uvicorn

from libs.common.settings import load_settings_or_exit
from services.kafka_llm_processor.settings import ProcessorSettings


def main() -> None:
    settings = load_settings_or_exit(ProcessorSettings)
    uvicorn.run(
        "services.kafka_llm_processor.app:app",
        host=settings.host,
        port=settings.port,
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 5,
    )


if __name__ == "__main__":
    main()
