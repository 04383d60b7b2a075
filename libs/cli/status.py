"""``pas status``: every PAS service's health in one table, from the well-known URLs and the
agents the registry holds, plus the Kafka broker; exit 1 when any is down."""

from __future__ import annotations

import asyncio
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import click
import httpx
import msgspec
from aiokafka.admin import AIOKafkaAdminClient
from rich.table import Table

from libs.cli.runtime import out, pass_settings, run
from libs.cli.settings import CLISettings
from libs.common.clients.registry import RegistryClient
from libs.common.errors import PASError
from libs.common.schemas.agents import RegisteredAgent

State = Literal["up", "degraded", "down"]

PROBE_TIMEOUT_S = 3.0
BROKER_TIMEOUT_S = 5.0
_DETAIL_CHARS = 160
_VALUE_CHARS = 48
_LISTED_ITEMS = 4


class ServiceHealth(msgspec.Struct, kw_only=True):
    service: str
    url: str
    status: State
    details: str = ""


def _same_place(url: str) -> str:
    """``url`` compared by where it points: ``localhost`` is the loopback address services
    register under, and PAS's well-known URLs name it either way."""
    parts = urlsplit(url.rstrip("/"))
    host = "127.0.0.1" if parts.hostname == "localhost" else (parts.hostname or "")
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return text[:_DETAIL_CHARS]


def _summary(details: object) -> str:
    """A health report's details on a line a person reads: ``key=value`` without Python's
    quotes and brackets, long lists as their length, a long path by its end (the file name),
    other long values by their start."""
    if not isinstance(details, dict):
        return ""
    text = ", ".join(f"{key}={_shown(value)}" for key, value in details.items())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "(" + ", ".join(f"{key} {_shown(inner)}" for key, inner in value.items()) + ")"
    if isinstance(value, list):
        if len(value) > _LISTED_ITEMS:
            return str(len(value))
        return ",".join(_shown(item) for item in value) or "none"
    text = str(value)
    if len(text) <= _VALUE_CHARS:
        return text
    if "/" in text and "://" not in text:  # a path: its file name says most
        return "..." + text[-(_VALUE_CHARS - 3) :]
    return text[: _VALUE_CHARS - 3] + "..."


async def probe(http: httpx.AsyncClient, service: str, url: str) -> ServiceHealth:
    """``GET <url>/health``: up while it answers healthy, degraded as it says, down otherwise."""
    try:
        response = await http.get(f"{url.rstrip('/')}/health")
    except httpx.HTTPError as exc:
        return ServiceHealth(service=service, url=url, status="down", details=_why(exc))
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return ServiceHealth(
            service=service, url=url, status="down", details=f"HTTP {response.status_code}"
        )
    said = body.get("status")
    status: State = (
        "up"
        if response.status_code == 200 and said in ("healthy", "ok", None)
        else "degraded"
        if response.status_code == 200 and said == "degraded"
        else "down"
    )
    details = _summary(body.get("details"))
    if status == "down":
        details = f"HTTP {response.status_code} {said or ''}: {details}".strip(": ")
    return ServiceHealth(service=service, url=url, status=status, details=details)


async def broker_health(bootstrap_servers: str) -> ServiceHealth:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(BROKER_TIMEOUT_S * 1000)
    )
    try:
        async with asyncio.timeout(BROKER_TIMEOUT_S):
            await admin.start()
            topics = await admin.list_topics()
    except Exception as exc:
        status: State = "down"
        details = _why(exc)
    else:
        status, details = "up", f"{len(topics)} topics"
    finally:
        await admin.close()
    return ServiceHealth(service="kafka", url=bootstrap_servers, status=status, details=details)


async def registered_agents(settings: CLISettings) -> list[RegisteredAgent] | str:
    """The registry's catalog, or why it could not be read."""
    async with RegistryClient(
        settings.registry_url, token=settings.registry_token, timeout_s=PROBE_TIMEOUT_S
    ) as registry:
        try:
            return (await registry.list_agents()).agents
        except PASError as exc:
            return str(exc)


async def gather_health(
    settings: CLISettings, services: dict[str, str], *, kafka: bool
) -> list[ServiceHealth]:
    """One row per place: the well-known services, then registered agents found nowhere else
    (an agent at a well-known URL adds what the registry says to that service's row)."""
    agents = await registered_agents(settings)
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, trust_env=False) as http:
        targets = list(services.items())
        extra: list[RegisteredAgent] = []
        by_place = {_same_place(url): name for name, url in targets}
        said_by_registry: dict[str, list[str]] = {}
        for agent in agents if isinstance(agents, list) else []:
            place = _same_place(agent.endpoint)
            note = f"agent {agent.agent_id}: {agent.status}"
            if place in by_place:
                said_by_registry.setdefault(by_place[place], []).append(note)
            elif agent.transport == "rest" and agent.endpoint.startswith("http"):
                targets.append((f"agent {agent.agent_id}", agent.endpoint))
                said_by_registry.setdefault(f"agent {agent.agent_id}", []).append(
                    f"registry: {agent.status}"
                )
            else:
                extra.append(agent)
        checks = [probe(http, name, url) for name, url in targets]
        rows = list(await asyncio.gather(*checks))
    if kafka:
        rows.append(await broker_health(settings.kafka_bootstrap_servers))
    for row in rows:
        notes = said_by_registry.get(row.service)
        if notes:
            row.details = "; ".join([*notes, row.details] if row.details else notes)
    if isinstance(agents, str) and "registry" in services:
        registry_row = next(row for row in rows if row.service == "registry")
        registry_row.details = registry_row.details or agents[:_DETAIL_CHARS]
    # Agents PAS cannot ask itself (Kafka, gRPC): what the registry last heard from them.
    rows += [
        ServiceHealth(
            service=f"agent {agent.agent_id}",
            url=agent.endpoint,
            status="up" if agent.status == "passing" else "down",
            details=f"registry: {agent.status} {agent.status_reason or ''}".strip(),
        )
        for agent in extra
    ]
    return rows


def _table(rows: list[ServiceHealth]) -> Table:
    table = Table(title="PAS status")
    for column in ("service", "url", "status", "details"):
        table.add_column(column, overflow="fold")
    colour = {"up": "green", "degraded": "yellow", "down": "bold red"}
    for row in rows:
        status = f"[{colour[row.status]}]{row.status}[/]"
        table.add_row(row.service, row.url, status, row.details)
    return table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
@click.option(
    "--service",
    "only",
    multiple=True,
    metavar="NAME",
    help="Ask only this well-known service (repeatable); registered agents are still listed.",
)
@click.option("--no-kafka", is_flag=True, help="Leave the Kafka broker out.")
@pass_settings
def status(settings: CLISettings, as_json: bool, only: tuple[str, ...], no_kafka: bool) -> None:
    """Every service's health: GET /health of each well-known service and each agent the
    registry holds, and the broker. Exit 1 when any is down."""
    services = settings.services()
    unknown = sorted(set(only) - set(services))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)}: not a PAS service ({', '.join(services)})",
            param_hint="--service",
        )
    if only:
        services = {name: url for name, url in services.items() if name in only}
    rows = run(gather_health(settings, services, kafka=not no_kafka))
    down = [row.service for row in rows if row.status == "down"]
    if as_json:
        report = {"healthy": not down, "services": rows}
        click.echo(msgspec.json.format(msgspec.json.encode(report), indent=2))
    else:
        out.print(_table(rows))
        if down:
            out.print(f"[bold red]down:[/] {', '.join(down)}")
    if down:
        raise SystemExit(1)
