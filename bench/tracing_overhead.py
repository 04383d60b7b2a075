"""What tracing costs a hop: the same service with tracing off, and on (every span exported over
OTLP/HTTP to a local receiver in another process), in the same run.

``--target router`` (the default): the provider router forwarding to the fast
OpenAI-compatible responder (``tests.support.openai_responder``), so that the router's own work
and its two spans a request (server, and GenAI as the outbound call's client span) are most of
what is timed.
``--target llm``: an LLM service on the embedded model (``services.llm.llama31_8b_service``),
the same prompt at temperature 0 and a few tokens, where the model's time dwarfs the spans'.

Requests alternate between the two processes one by one (off, on, on, off...), so that the
drift of a shared or virtual machine falls on both alike. The numbers are sequential latencies
(httpx client, one request at a time): the ratio of the p50s is what matters, per round and
over all rounds; beside it, each process's own CPU a request (from ``/proc``, every thread: the
span work and the export thread's encoding), which the machine's drift moves far less.

Run: ``.venv/bin/python -m bench.tracing_overhead [--target llm] [--rounds 5 --requests 300]``
(``--requests`` per service per round: 300 for the router by default, 20 for the LLM service).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.process_stats import cpu_seconds
from bench.router_overhead import BODY, fast_provider_file, p
from tests.support.llm_service import start_llm_service
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import ServiceProcess, free_port

LLM_BODY = {
    "model": "llama3.1:8b",
    "messages": [{"role": "user", "content": "Price of a 10y bond?"}],
    "max_tokens": 8,
    "temperature": 0,
}
WARM_UP = {"router": 20, "llm": 3}


async def alternating(
    urls: dict[str, str], body: dict[str, Any], count: int, warm_up: int
) -> dict[str, list[float]]:
    """``count`` sequential requests to each URL, taking turns one by one (the order flipped
    every turn), after ``warm_up`` each; their latencies by name."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.AsyncClient(base_url=url, timeout=120) for name, url in urls.items()}
    try:
        for _ in range(warm_up):  # connections and caches
            for http in clients.values():
                (await http.post("/v1/chat/completions", json=body)).raise_for_status()
        names = list(urls)
        for turn in range(count):
            for name in names if turn % 2 == 0 else reversed(names):
                started = time.perf_counter()
                (await clients[name].post("/v1/chat/completions", json=body)).raise_for_status()
                samples[name].append(time.perf_counter() - started)
    finally:
        for http in clients.values():
            await http.aclose()
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
    return start_llm_service(
        work / f"llm-{name}.log", {"LOG_LEVEL": "WARNING", **env}, ready_timeout_s=120
    )


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
        urls = {name: service.url for name, service in services.items()}
        samples: dict[str, list[float]] = {name: [] for name in services}
        cpu_us: dict[str, list[float]] = {name: [] for name in services}
        ratios = []
        try:
            for _ in range(args.rounds):
                before = {name: cpu_seconds(s.pid) for name, s in services.items()}
                found = asyncio.run(alternating(urls, body, requests, WARM_UP[args.target]))
                for name, service in services.items():
                    spent = cpu_seconds(service.pid) - before[name]
                    cpu_us[name].append(spent / (requests + WARM_UP[args.target]) * 1e6)
                    samples[name] += found[name]
                ratios.append(p(found["on"], 0.5) / p(found["off"], 0.5))
        finally:
            for service in [*services.values(), *helpers]:
                service.stop()
        exported = len(receiver.spans())

    print(f"target: {args.target}")
    header = ("tracing", "requests", "p50 ms", "p90 ms", "p99 ms", "CPU us/req")
    print("{:<8} {:>9} {:>8} {:>8} {:>8} {:>11}".format(*header))
    for name, values in samples.items():
        print(
            f"{name:<8} {len(values):>9} {p(values, 0.5):8.3f} {p(values, 0.9):8.3f} "
            f"{p(values, 0.99):8.3f} {statistics.median(cpu_us[name]):11.0f}"
        )
    ratio = p(samples["on"], 0.5) / p(samples["off"], 0.5)
    print(f"p50 on/off: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%); spans received: {exported}")
    print(
        f"per round: p50 on/off median {statistics.median(ratios):.3f} "
        f"(from {min(ratios):.3f} to {max(ratios):.3f}); CPU a request on/off median "
        f"{statistics.median(cpu_us['on']) / statistics.median(cpu_us['off']):.3f}"
    )


if __name__ == "__main__":
    main()
