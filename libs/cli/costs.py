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


def _row(line: CostLine, writes: bool, name: str | None = None) -> list[str]:
    return [
        name if name is not None else (line.key if line.key is not None else "(none)"),
        str(line.llm_calls),
        str(line.prompt_tokens),
        str(line.cached_tokens),
        *([str(line.cache_write_tokens)] if writes else []),
        str(line.completion_tokens),
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
    (ANALYTICS_URL): calls, prompt tokens (of them, read from a prompt cache, and written to
    a provider's where any were), output tokens, cost in USD."""
    report = run(fetch_costs(settings, group_by, start, end))
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(report), indent=2))
        return
    since, until = (
        t.isoformat(timespec="seconds") for t in (report.period.start, report.period.end)
    )
    period = f"{since} to {until}"
    table = Table(title=f"LLM costs by {report.group_by}, {period}")
    # Short headers, and cache writes only where a provider made some, so that a model's name
    # and its cost fit a terminal of 80 columns (JSON has every figure, total tokens too).
    writes = report.total.cache_write_tokens > 0
    columns = (report.group_by, "calls", "prompt", "cached", *(["writes"] if writes else []))
    for column in (*columns, "output", "USD"):
        table.add_column(column, justify="left" if column == report.group_by else "right")
    for line in report.groups:
        table.add_row(*_row(line, writes))
    table.add_section()
    table.add_row(*_row(report.total, writes, "total"))
    out.print(table)
