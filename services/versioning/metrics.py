"""Prometheus metrics of the version manager."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class VersioningMetrics:
    def __init__(self) -> None:
        self.versions_created = Counter(
            "pas_versioning_versions_created",
            "Workflow versions written (kind: create or rollback)",
            ["kind"],
            registry=None,
        )
        self.alias_moves = Counter(
            "pas_versioning_alias_moves", "Alias moves committed", ["alias"], registry=None
        )
        self.write_failures = Counter(
            "pas_versioning_write_failures",
            "Writes git refused or failed; the repository was left unchanged",
            registry=None,
        )
        self.pushes = Counter(
            "pas_versioning_pushes", "Pushes to the remote by result", ["result"], registry=None
        )
        self.assignments = Counter(
            "pas_versioning_assignments",
            "Units assigned to a variant",
            ["experiment_id", "variant"],
            registry=None,
        )
        self.outcomes = Counter(
            "pas_versioning_outcomes",
            "Experiment outcomes by source (rest, kafka) and result (recorded; replaced: a run "
            "id already known)",
            ["source", "result"],
            registry=None,
        )
        self.dead_lettered = Counter(
            "pas_versioning_events_dead_lettered",
            "workflow-results events sent to the DLQ, by reason",
            ["reason"],
            registry=None,
        )
        self.promotions = Counter(
            "pas_versioning_promotions", "Experiment winners auto-promoted", registry=None
        )

    def collectors(self, state: Callable[[], dict[str, int]]) -> list[Collector]:
        return [
            self.versions_created,
            self.alias_moves,
            self.write_failures,
            self.pushes,
            self.assignments,
            self.outcomes,
            self.dead_lettered,
            self.promotions,
            _StateCollector(state),
        ]


class _StateCollector(Collector):
    """Gauges read from the catalog and the experiments when Prometheus scrapes."""

    def __init__(self, state: Callable[[], dict[str, int]]) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in self._state().items():
            yield GaugeMetricFamily(f"pas_versioning_{name}", name.replace("_", " "), value=value)
