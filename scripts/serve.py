"""``python -m scripts.serve SERVICE``: run one PAS service in the foreground (the image's command).

The container counterpart of ``scripts/start_*.sh``: the same app and default port for each
service (tests/deploy checks that they agree), but run in the foreground as the container's
main process, so that the engine's SIGTERM reaches uvicorn and the service drains. It listens
on ``<PREFIX>HOST``, else ``PAS_HOST`` (the image sets ``0.0.0.0``: beyond loopback a service
refuses to start without a token, docs/security.md), and on ``<PREFIX>PORT``, else its default.

``python -m scripts.serve SERVICE --health`` asks the service's ``/health`` instead and exits
0 when it answers 200: the image's HEALTHCHECK (slim images have no curl). The service may also
come from ``$SERVICE``, as in ``deploy/docker-compose.yml`` and ``deploy/k8s``.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from libs.common.constants import (
    ANALYTICS_PORT,
    KAFKA_LLM_PROCESSOR_PORT,
    LANGGRAPH_RUNNER_PORT,
    LLAMA31_8B_PORT,
    PROVIDER_ROUTER_PORT,
    REGISTRY_PORT,
    TINYLLAMA_PORT,
    TLC_CLASSIFIER_PORT,
    VERSIONING_PORT,
)

# What uvicorn waits for open connections on SIGTERM, as in scripts/lib.sh. Draining the
# workers (Kafka consumers, runs) happens afterwards, in each app's lifespan.
GRACEFUL_SHUTDOWN_S = 10
HEALTH_TIMEOUT_S = 4.0
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True)
class Service:
    """One PAS service: its ASGI app, its settings' variable prefix and its default port."""

    app: str
    env_prefix: str
    port: int


SERVICES: Mapping[str, Service] = {
    "registry": Service("services.registry.registry_service:app", "REGISTRY_", REGISTRY_PORT),
    "provider_router": Service(
        "services.provider_router.provider_router:app", "ROUTER_", PROVIDER_ROUTER_PORT
    ),
    "llama31_8b": Service("services.llm.llama31_8b_service:app", "LLAMA31_8B_", LLAMA31_8B_PORT),
    "tinyllama": Service("services.llm.tinyllama_service:app", "TINYLLAMA_", TINYLLAMA_PORT),
    "tlc_classifier": Service(
        "services.llm.tlc_classifier_service:app", "TLC_", TLC_CLASSIFIER_PORT
    ),
    "kafka_llm_processor": Service(
        "services.kafka_llm_processor.app:app", "PROCESSOR_", KAFKA_LLM_PROCESSOR_PORT
    ),
    "langgraph_runner": Service(
        "services.langgraph_runner.app:app", "RUNNER_", LANGGRAPH_RUNNER_PORT
    ),
    "versioning": Service("services.versioning.app:app", "VERSIONING_", VERSIONING_PORT),
    "analytics": Service("services.analytics.app:app", "ANALYTICS_", ANALYTICS_PORT),
}


def listen_address(service: Service, environ: Mapping[str, str]) -> tuple[str, int]:
    """Where the service listens: ``<PREFIX>HOST``/``PAS_HOST`` and ``<PREFIX>PORT``."""
    prefix = service.env_prefix
    host = environ.get(f"{prefix}HOST") or environ.get("PAS_HOST") or "127.0.0.1"
    port = int(environ.get(f"{prefix}PORT") or service.port)
    return host, port


def uvicorn_command(service: Service, environ: Mapping[str, str]) -> list[str]:
    """The command line that serves ``service``, as scripts/lib.sh's ``pas_start`` builds it."""
    host, port = listen_address(service, environ)
    return [
        sys.executable,
        "-m",
        "uvicorn",
        service.app,
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        str(GRACEFUL_SHUTDOWN_S),
    ]


def health_url(service: Service, environ: Mapping[str, str]) -> str:
    host, port = listen_address(service, environ)
    # A wildcard address listens on loopback too; a named one is asked where it listens.
    probe = "127.0.0.1" if host in _WILDCARD_HOSTS else host
    if ":" in probe and not probe.startswith("["):
        probe = f"[{probe}]"
    return f"http://{probe}:{port}/health"


def is_healthy(url: str) -> bool:
    """``/health`` answered 200 (healthy or degraded); 503, an error or no answer is not."""
    try:
        # S310: the URL is the http one health_url built, never a file: or custom scheme.
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m scripts.serve", description=__doc__)
    parser.add_argument(
        "service",
        nargs="?",
        default=environ.get("SERVICE"),
        help=f"one of {', '.join(SERVICES)} (default: $SERVICE)",
    )
    parser.add_argument(
        "--health", action="store_true", help="ask the service's /health; exit 0 when healthy"
    )
    args = parser.parse_args(argv)
    service = SERVICES.get(args.service or "")
    if service is None:
        parser.error(f"name a service (or set SERVICE): one of {', '.join(SERVICES)}")
    if args.health:
        return 0 if is_healthy(health_url(service, environ)) else 1
    command = uvicorn_command(service, environ)
    # exec: uvicorn becomes this process, so the engine's signals reach it directly.
    os.execv(command[0], command)  # noqa: S606  (our interpreter, fixed arguments)


if __name__ == "__main__":
    sys.exit(main())
