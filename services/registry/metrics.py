"""Registry gauges, computed from the catalog when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.registry.catalog import Catalog


class CatalogCollector(Collector):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        agents = GaugeMetricFamily(
            "pas_registry_agents", "Registered agents by health status", labels=["status"]
        )
        for status, count in self._catalog.count_by_status().items():
            agents.add_metric([status], count)
        yield agents
        yield GaugeMetricFamily(
            "pas_registry_catalog_index",
            "Catalog index; it grows on every change a watcher sees",
            value=self._catalog.index,
        )
