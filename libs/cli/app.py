"""The ``pas`` command group: ``pas status | send | trigger | dlq | spill | costs | eval | key``."""

from __future__ import annotations

import importlib
import logging

import click
import structlog

from libs.cli.settings import CLISettings
from libs.common.errors import SettingsError
from libs.common.settings import load_settings

COMMANDS = {
    "status": "libs.cli.status:status",
    "send": "libs.cli.send:send",
    "trigger": "libs.cli.trigger:trigger",
    "dlq": "libs.cli.dlq:dlq",
    "spill": "libs.cli.spill:spill",
    "costs": "libs.cli.costs:costs",
    "eval": "libs.cli.evaluate:evaluate",
    "key": "libs.cli.keys:key",
}
"""Each command and where it is: its module is imported when the command runs (or help lists
it), not for every ``pas``. Importing them all (Kafka, Litestar's problem types, the HTTP
clients) took about 0.9 s of a ``pas key new`` that needs none of it."""


class _CommandsOnDemand(click.Group):
    """A group that imports a command's module when the command is asked for (click's own
    recipe for lazily loaded subcommands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, _, name = COMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command), COMMANDS[cmd_name]
        return command


@click.group(
    cls=_CommandsOnDemand,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Operate a running PAS: its health, documents and workflows, dead letters and costs.

    Where PAS is comes from the environment (and .env), as for every PAS service:
    KAFKA_BOOTSTRAP_SERVERS, REGISTRY_URL, RUNNER_URL, ANALYTICS_URL, ... and the tokens
    (RUNNER_TOKEN, ..., else PAS_TOKEN); see .env.example.
    """
    try:
        ctx.obj = load_settings(CLISettings)
    except SettingsError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        ctx.exit(2)


def main() -> None:
    # The command says itself what it could not reach; aiokafka's own log lines would only
    # repeat it, out of order, on stderr.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # So do PAS's own Kafka helpers (reading past a record it cannot build, topic_reader.py),
    # and structlog left as it is prints their lines into the command's stdout.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    cli(prog_name="pas")
