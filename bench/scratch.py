"""The scratch a Kafka bench runs in: a temporary folder and the embedded broker, logging into
it, both gone when the bench ends (whatever ended it)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from libs.common.kafka.broker import EmbeddedBroker
from tests.support.processes import free_port


@contextmanager
def broker_in_scratch(prefix: str | None = None) -> Iterator[tuple[Path, EmbeddedBroker]]:
    """The folder (named from ``prefix``) and the broker started on a free loopback port."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as scratch,
        EmbeddedBroker(port=free_port(), log_path=Path(scratch) / "broker.log") as broker,
    ):
        yield Path(scratch), broker
