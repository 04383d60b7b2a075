"""What tracing costs a hop: the same service with tracing off, and on (every span exported over
OTLP/HTTP to a local receiver in another process), in the same run.

``--target router`` (the default): the provider router forwarding to the fast
OpenAI-compatible responder (``tests.support.openai_responder``), so that the router's own work
and its three spans a request (server, GenAI, outbound client) are most of what is timed.
``--target llm``: an LLM service on the embedded model (``services.llm.llama31_8b_service``),
the same prompt at temperature 0 and a few tokens, where the model's time dwarfs the spans'.

The requests alternate between the two processes in rounds so that drift on a shared machine
falls on both. The numbers are sequential latencies (httpx client, one request at a time); the
ratio of the p50s is what matters.

Run: ``.venv/bin/python -m bench.tracing_overhead [--target llm] [--rounds 5 --requests 300]``
(``--requests`` defaults to 300 for the router, 20 for the LLM service).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.router_overhead import BODY, fast_provider_file, p
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import ServiceProcess, free_port

LLM_APP = "services.llm.llama31_8b_service:app"
LLM_BODY = {
    "model": "llama3.1:8b",
    "messages": [{"role": "user", "content": "Price of a 10y bond?"}],
    "max_tokens": 8,
    "temperature": 0,
}
WARM_UP = {"router": 20, "llm": 3}


async def latencies(url: str, body: dict[str, Any], count: int, warm_up: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for _ in range(warm_up):  # connections and caches
            (await http.post("/v1/chat/completions", json=body)).raise_for_status()
        for _ in range(count):
            started = time.perf_counter()
            (await http.post("/v1/chat/completions", json=body)).raise_for_status()
            samples.append(time.perf_counter() - started)
    return samples


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


def start_llm(work: Path, name: str, env: dict[str, str]) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        LLM_APP,
        port,
        {
            "LLAMA31_8B_PORT": str(port),
            "LLAMA31_8B_REGISTER": "false",
            "LLAMA31_8B_CONTEXT_LENGTH": "1024",
            "LOG_LEVEL": "WARNING",
            **env,
        },
        work / f"llm-{name}.log",
    ).start(ready_timeout_s=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=("router", "llm"), default="router")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=None, help="per service per round")
    args = parser.parse_args()
    requests = args.requests or (300 if args.target == "router" else 20)
    with tempfile.TemporaryDirectory() as tmp, OTLPReceiver() as receiver:
        work = Path(tmp)
        tracing = {"off": {}, "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}}
        helpers: list[ServiceProcess] = []
        start: Callable[[str, dict[str, str]], ServiceProcess]
        if args.target == "router":
            backend = ServiceProcess(
                "tests.support.openai_responder:app", free_port(), {}, work / "backend.log"
            ).start(ready_path="/v1/models")
            helpers.append(backend)
            providers = fast_provider_file(work, backend.url)
            body: dict[str, Any] = BODY

            def start(name: str, env: dict[str, str]) -> ServiceProcess:
                return start_router(providers, work, name, env)
        else:
            body = LLM_BODY

            def start(name: str, env: dict[str, str]) -> ServiceProcess:
                return start_llm(work, name, env)

        services = {name: start(name, env) for name, env in tracing.items()}
        samples: dict[str, list[float]] = {name: [] for name in services}
        try:
            for _ in range(args.rounds):
                for name, service in services.items():
                    samples[name] += asyncio.run(
                        latencies(service.url, body, requests, WARM_UP[args.target])
                    )
        finally:
            for service in [*services.values(), *helpers]:
                service.stop()
        exported = len(receiver.spans())

    print(f"target: {args.target}")
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
