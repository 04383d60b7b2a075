"""``pas costs``: what LLM calls cost, from the analytics service (``GET /analytics/costs``)."""

from __future__ import annotations

import typing

import click
import msgspec
from rich.table import Table

from libs.cli.runtime import out, pass_settings, run
from libs.cli.settings import CLISettings
from libs.common.clients.analytics import AnalyticsClient, AnalyticsError
from libs.common.schemas.usage import CostLine, CostReport, GroupBy


async def fetch_costs(
    settings: CLISettings, group_by: GroupBy, start: str | None, end: str | None
) -> CostReport:
    try:
        async with AnalyticsClient(
            settings.analytics_url, token=settings.analytics_token, timeout_s=30.0
        ) as analytics:
            return await analytics.cost_report(group_by, start=start, end=end)
    except AnalyticsError as exc:
        raise click.ClickException(str(exc)) from exc


def _row(line: CostLine, name: str | None = None) -> list[str]:
    return [
        name if name is not None else (line.key if line.key is not None else "(none)"),
        str(line.llm_calls),
        str(line.prompt_tokens),
        str(line.cached_tokens),
        str(line.cache_write_tokens),
        str(line.completion_tokens),
        str(line.total_tokens),
        f"{line.cost_usd:.6f}",
    ]


@click.command()
@click.option(
    "--group-by",
    type=click.Choice(typing.get_args(GroupBy)),
    default="model",
    show_default=True,
)
@click.option("--from", "start", metavar="ISO8601", help="Start (default: 24 hours before --to).")
@click.option("--to", "end", metavar="ISO8601", help="End, exclusive (default: now).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@pass_settings
def costs(
    settings: CLISettings, group_by: GroupBy, start: str | None, end: str | None, as_json: bool
) -> None:
    """Tokens and cost per model, workflow, provider, capability, service or desk key
    (ANALYTICS_URL)."""
    report = run(fetch_costs(settings, group_by, start, end))
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(report), indent=2))
        return
    since, until = (
        t.isoformat(timespec="seconds") for t in (report.period.start, report.period.end)
    )
    period = f"{since} to {until}"
    table = Table(title=f"LLM costs by {report.group_by}, {period}")
    columns = (report.group_by, "calls", "prompt", "of it cached", "cache writes")
    for column in (*columns, "completion", "tokens", "cost (USD)"):
        table.add_column(column, justify="left" if column == report.group_by else "right")
    for line in report.groups:
        table.add_row(*_row(line))
    table.add_section()
    table.add_row(*_row(report.total, "total"))
    out.print(table)
