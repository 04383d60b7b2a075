"""What every ``pas`` command shares: its settings, its two consoles, progress bars, and
running its async work with failures turned into one clear line."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click
import httpx
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from libs.cli.settings import CLISettings

T = TypeVar("T")

# Results go to stdout (to pipe or parse); progress and errors to stderr.
out = Console(soft_wrap=False)
err = Console(stderr=True)

pass_settings = click.make_pass_decorator(CLISettings)

CELL_CHARS = 80
"""The most of a free text (an error, a reason) a table cell shows."""


def one_line(text: str | None, chars: int = CELL_CHARS) -> str:
    """``text`` on one line, its whitespace folded, cut to ``chars`` with an ellipsis."""
    text = " ".join((text or "").split())
    return text if len(text) <= chars else text[: chars - 3] + "..."


def progress() -> Progress:
    """A bar on stderr that disappears when done (on a terminal; nothing is drawn otherwise)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def run(work: Coroutine[Any, Any, T], *, broker: str | None = None) -> T:
    """Run ``work``; a broker or service that cannot be reached ends the command with one line
    saying which (exit 1), not a traceback."""
    try:
        return asyncio.run(work)
    except KafkaError as exc:
        where = f" at {broker}" if broker else ""
        raise click.ClickException(f"Kafka{where}: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:
        try:
            url = str(exc.request.url)
        except RuntimeError:  # an error raised before any request was built
            url = "HTTP"
        raise click.ClickException(f"{url}: {type(exc).__name__}: {exc}") from exc
