"""What tracing costs a router hop: the provider router with tracing off, and on (every span
exported over OTLP/HTTP to a local receiver in another process), in the same run.

The backend is the fast OpenAI-compatible responder (``tests.support.openai_responder``); both
routers forward to it, and the requests alternate between them in rounds so that drift on a
shared machine falls on both. The numbers are sequential latencies (httpx client, one request
at a time); the ratio of the p50s is what matters.

Run: ``.venv/bin/python -m bench.tracing_overhead [--rounds 5 --requests 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.router_overhead import fast_provider_file, latencies, p
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import ServiceProcess, free_port


def start_router(providers: Path, work: Path, name: str, env: dict[str, str]) -> ServiceProcess:
    return ServiceProcess(
        "services.provider_router.provider_router:app",
        free_port(),
        {
            "ROUTER_USE_REGISTRY": "false",
            "ROUTER_PROVIDERS_FILE": str(providers),
            "ROUTER_DATABASE_URL": f"sqlite:///{work}/router-{name}.db",
            "LOG_LEVEL": "WARNING",
            **env,
        },
        work / f"router-{name}.log",
    ).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300, help="per router per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, OTLPReceiver() as receiver:
        work = Path(tmp)
        backend = ServiceProcess(
            "tests.support.openai_responder:app", free_port(), {}, work / "backend.log"
        ).start(ready_path="/v1/models")
        providers = fast_provider_file(work, backend.url)
        routers = {
            "off": start_router(providers, work, "off", {}),
            "on": start_router(
                providers, work, "on", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in routers}
        try:
            for _ in range(args.rounds):
                for name, router in routers.items():
                    samples[name] += asyncio.run(latencies(router.url, args.requests))
        finally:
            for router in routers.values():
                router.stop()
            backend.stop()
        exported = len(receiver.spans())

    print(f"{'tracing':<8} {'requests':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, values in samples.items():
        print(
            f"{name:<8} {len(values):>9} {p(values, 0.5):8.3f} {p(values, 0.9):8.3f} "
            f"{p(values, 0.99):8.3f}"
        )
    ratio = p(samples["on"], 0.5) / p(samples["off"], 0.5)
    print(f"p50 on/off: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%); spans received: {exported}")


if __name__ == "__main__":
    main()
