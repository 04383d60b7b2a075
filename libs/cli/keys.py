"""``pas key new <name>``: a desk key for the provider router (``ROUTER_KEYS_FILE``);
``pas key list``: where each key stands (the router's ``GET /keys``).

The token is printed once, for the desk; the keys file gets its SHA-256 only, so the file is
no secret. Nothing is sent anywhere: add the printed entry to the file; the router takes the
changed file within ``ROUTER_FILES_POLL_S``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import httpx
from rich.table import Table

from libs.cli.runtime import out, pass_settings, run
from libs.cli.settings import CLISettings


@click.group()
def key() -> None:
    """Desk keys for the provider router: a token per desk or team, with its own budget."""


@key.command("new")
@click.argument("name")
@click.option("--budget", type=click.FloatRange(min=0), help="Daily budget in USD (UTC days).")
@click.option("--rpm", type=click.IntRange(min=1), help="Requests a minute.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens a minute.")
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    help="What the key may ask (repeat for more; default: anything).",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="A provider it may be routed to: a name from the providers file, or local for PAS's "
    "own LLM services (repeat for more; default: any).",
)
@click.option(
    "--expires",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    help="When its token stops being taken, UTC (a date: its 00:00). Default: never.",
)
@click.option("--days", type=click.IntRange(min=1), help="Expires this many days from now.")
def new(
    name: str,
    *,
    budget: float | None,
    rpm: int | None,
    tpm: int | None,
    capabilities: tuple[str, ...],
    providers: tuple[str, ...],
    expires: datetime | None,
    days: int | None,
) -> None:
    """Make a key NAME: its token, and the entry for the router's keys file."""
    # Imported here: the router's modules bring Litestar, which the other commands skip.
    import msgspec  # noqa: PLC0415

    from services.provider_router.desk_keys import (  # noqa: PLC0415
        DeskKey,
        new_token,
        token_digest,
    )

    expiry = _expiry(expires, days)
    token = new_token()
    try:  # the file's own rules, so the entry printed is one the router takes
        msgspec.convert({"name": name, "sha256": token_digest(token)}, DeskKey)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    lines = ["[[keys]]", f"name = {json.dumps(name)}", f'sha256 = "{token_digest(token)}"']
    if budget is not None:
        lines.append(f"daily_budget_usd = {budget}")
    if rpm is not None:
        lines.append(f"rpm = {rpm}")
    if tpm is not None:
        lines.append(f"tpm = {tpm}")
    if capabilities:
        lines.append(f"capabilities = {json.dumps(list(capabilities))}")
    if providers:
        lines.append(f"providers = {json.dumps(list(providers))}")
    if expiry is not None:
        lines.append(f"expires = {expiry.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    click.echo(f"token for {name} (shown once; the desk sends it as a bearer token):")
    click.echo(f"  {token}")
    click.echo("entry for ROUTER_KEYS_FILE (the router takes the changed file by itself):")
    click.echo("\n".join(lines))


def _expiry(expires: datetime | None, days: int | None) -> datetime | None:
    """The moment the key stops working, UTC; refused when it would never work."""
    if expires is not None and days is not None:
        raise click.UsageError("give --expires or --days, not both")
    now = datetime.now(UTC).replace(microsecond=0)
    if days is not None:
        return now + timedelta(days=days)
    if expires is None:
        return None
    moment = expires.replace(tzinfo=UTC)
    if moment <= now:
        raise click.BadParameter(
            f"{moment.isoformat()} is past: the key would never work", param_hint="--expires"
        )
    return moment


async def _keys(router_url: str, token: str | None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(f"{router_url.rstrip('/')}/keys", headers=headers)
        if response.status_code == 401:
            why = (
                "refused the token: ROUTER_TOKEN (or PAS_TOKEN) must be the router's"
                if token
                else "lists its keys to its own token: set ROUTER_TOKEN (or PAS_TOKEN)"
            )
            raise click.ClickException(f"{router_url} {why}")
        response.raise_for_status()
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


def _limit(value: Any) -> str:
    return "-" if value is None else str(value)


def _may_ask(row: dict[str, Any]) -> str:
    what = ", ".join(row["capabilities"]) if row["capabilities"] else "anything"
    providers = row.get("providers")
    return f"{what} of {', '.join(providers)}" if providers else what


def _moment(value: str | None) -> str:
    """An RFC 3339 time as a short UTC one."""
    if value is None:
        return "never"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@key.command("list")
@pass_settings
def list_keys(settings: CLISettings) -> None:
    """Each desk key's limits and where it stands: spend today, last minute (ROUTER_URL, with
    ROUTER_TOKEN, else PAS_TOKEN)."""
    rows = run(_keys(settings.router_url, settings.router_token))
    table = Table(title=f"Desk keys at {settings.router_url}")
    columns = ("key", "may ask", "spent today / budget (USD)", "last minute", "expires")
    for column in (*columns, "refused now"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            _may_ask(row),
            f"{row['spent_today_usd']:.4f} / {_limit(row['daily_budget_usd'])}",
            f"{row['requests_last_minute']} req / {_limit(row['rpm'])}, "
            f"{row['tokens_last_minute']} tok / {_limit(row['tpm'])}",
            _moment(row.get("expires")),
            row["refused_now"] or "",
        )
    out.print(table)
