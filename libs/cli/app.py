"""The ``pas`` command group: ``pas status | send | trigger | dlq | spill | costs | eval | key``."""

from __future__ import annotations

import logging

import click
import structlog

from libs.cli import costs, dlq, evaluate, keys, send, spill, status, trigger
from libs.cli.settings import CLISettings
from libs.common.errors import SettingsError
from libs.common.settings import load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


cli.add_command(status.status)
cli.add_command(send.send)
cli.add_command(trigger.trigger)
cli.add_command(dlq.dlq)
cli.add_command(spill.spill)
cli.add_command(costs.costs)
cli.add_command(evaluate.evaluate)
cli.add_command(keys.key)


def main() -> None:
    # The command says itself what it could not reach; aiokafka's own log lines would only
    # repeat it, out of order, on stderr.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # So do PAS's own Kafka helpers (reading past a record it cannot build, topic_reader.py),
    # and structlog left as it is prints their lines into the command's stdout.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    cli(prog_name="pas")
