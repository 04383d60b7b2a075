"""Observability fixtures: a real OTLP/HTTP receiver in another process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.otlp_receiver import OTLPReceiver


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(tmp_path / "otlp.log") as running:
        yield running
