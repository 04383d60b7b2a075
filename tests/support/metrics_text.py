"""Values read off a service's ``/metrics`` page, with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample_value(metrics_text: str, name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` (a counter's with its ``_total``) whose
    labels include ``labels``; fails unless exactly one matches."""
    found = [
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    assert len(found) == 1, f"{name} {labels}: {len(found)} samples in /metrics"
    return found[0]


def counted(metrics_text: str, name: str, **labels: str) -> float:
    """``sample_value``, or 0 where no sample matches: a counter whose labels nothing has
    counted yet is not on the page. For what some requests add to a counter (after less
    before) on a service that served others first."""
    matching = [
        sample
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    return sample_value(metrics_text, name, **labels) if matching else 0.0
