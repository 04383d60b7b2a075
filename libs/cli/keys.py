"""``pas key new <name>``: a desk key for the provider router (``ROUTER_KEYS_FILE``);
``pas key list``: where each key stands (the router's ``GET /keys``).

The token is printed once, for the desk; the keys file gets its SHA-256 only, so the file is
no secret. Nothing is sent anywhere: add the printed entry to the file; the router takes the
changed file within ``ROUTER_FILES_POLL_S``.
"""

from __future__ import annotations

import json
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
def new(
    name: str,
    budget: float | None,
    rpm: int | None,
    tpm: int | None,
    capabilities: tuple[str, ...],
) -> None:
    """Make a key NAME: its token, and the entry for the router's keys file."""
    # Imported here: the router's modules bring Litestar, which the other commands skip.
    import msgspec  # noqa: PLC0415

    from services.provider_router.desk_keys import (  # noqa: PLC0415
        DeskKey,
        new_token,
        token_digest,
    )

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
    click.echo(f"token for {name} (shown once; the desk sends it as a bearer token):")
    click.echo(f"  {token}")
    click.echo("entry for ROUTER_KEYS_FILE (the router takes the changed file by itself):")
    click.echo("\n".join(lines))


async def _keys(router_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(f"{router_url.rstrip('/')}/keys")
        response.raise_for_status()
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


def _limit(value: Any) -> str:
    return "-" if value is None else str(value)


@key.command("list")
@pass_settings
def list_keys(settings: CLISettings) -> None:
    """Each desk key's limits and where it stands: spend today, last minute (ROUTER_URL)."""
    rows = run(_keys(settings.router_url))
    table = Table(title=f"Desk keys at {settings.router_url}")
    for column in ("key", "may ask", "spent today / budget (USD)", "last minute", "refused now"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            ", ".join(row["capabilities"]) if row["capabilities"] else "anything",
            f"{row['spent_today_usd']:.4f} / {_limit(row['daily_budget_usd'])}",
            f"{row['requests_last_minute']} req / {_limit(row['rpm'])}, "
            f"{row['tokens_last_minute']} tok / {_limit(row['tpm'])}",
            row["refused_now"] or "",
        )
    out.print(table)
