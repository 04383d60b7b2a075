"""Alerts from a real PAS service to a receiver, through Debian's Prometheus and Alertmanager.

The Kafka LLM processor runs on the embedded broker; a real Prometheus scrapes it every second
with the deploy config and the dead-letter rules of deploy/prometheus/alerts.yml; a poison
document lands in the DLQ; the alert fires and Alertmanager, on the deploy config, delivers it
to the webhook this test runs, as the chat message an operator would read. Then the routing
and inhibition of that config: alerts posted to the same Alertmanager as Prometheus posts them.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from libs.common.kafka.topics import ensure_topics
from tests.support.polling import poll
from tests.support.processes import ServiceProcess, free_port
from tests.support.prometheus import (
    ALERT_RULES,
    Alertmanager,
    Prometheus,
    alertmanager_config,
    alertmanager_installed,
    prometheus_config,
    prometheus_installed,
)
from tests.support.receivers import SmtpSink, WebhookReceiver

pytestmark = pytest.mark.skipif(
    not (prometheus_installed() and alertmanager_installed()),
    reason="needs Debian's prometheus and prometheus-alertmanager packages",
)

PROCESSOR_PORT = 6160  # its default, as deploy/prometheus/prometheus.yml scrapes it
# The rules' 15-minute window (how long a new dead letter alerts, how long Prometheus must
# have scraped a target before a letter counts as new) shortened for a test that lasts seconds.
WINDOW = "10s"


class Delivery(msgspec.Struct, kw_only=True):
    alertmanager: Alertmanager
    webhook: WebhookReceiver
    smtp: SmtpSink


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivery]:
    workdir = Path(tmp_path_factory.mktemp("alertmanager"))
    with WebhookReceiver() as webhook, SmtpSink() as smtp:
        config = alertmanager_config(
            workdir, webhook_url=f"{webhook.url}/slack", smtp_port=smtp.port
        )
        with Alertmanager(config, workdir) as alertmanager:
            yield Delivery(alertmanager=alertmanager, webhook=webhook, smtp=smtp)


def _dead_letter_rules(path: Path) -> Path:
    """The dead-letter group of the deploy rules with its window shortened, nothing else."""
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    [group] = [g for g in groups if g["name"] == "pas-dead-letters"]
    for rule in group["rules"]:
        rule["expr"] = re.sub(r"\b15m\b", WINDOW, rule["expr"])
    path.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
    return path


def _messages(webhook: WebhookReceiver, alertname: str) -> list[dict[str, Any]]:
    """The chat messages (Slack attachments) about ``alertname`` received so far."""
    return [
        attachment
        for path, body in list(webhook.received)
        if path == "/slack"
        for attachment in body.get("attachments", [])
        if alertname in attachment.get("title", "")
    ]


def test_a_poison_document_pages_through_prometheus_and_alertmanager(
    kafka_bootstrap: str, delivery: Delivery, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    documents, results, dlq = f"docs-{run}", f"results-{run}", f"dlq-{run}"
    asyncio.run(ensure_topics(kafka_bootstrap, {documents: 1, results: 1, dlq: 1}))
    processor = ServiceProcess(
        "services.kafka_llm_processor.app:app",
        free_port(),
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "INPUT_TOPIC": documents,
            "OUTPUT_TOPIC": results,
            "DLQ_TOPIC": dlq,
            # A poison document never reaches the LLM: nothing listens here.
            "LLM_URL": f"http://127.0.0.1:{free_port()}/v1",
            "PROCESSOR_GROUP_ID": f"processor-{run}",
            "PROCESSOR_COMMIT_INTERVAL_S": "0.2",
            "PROCESSOR_SPILL_DIR": str(tmp_path / "spill"),
        },
        tmp_path / "processor.log",
    ).start()
    try:
        config = prometheus_config(
            {PROCESSOR_PORT: processor.port},
            rule_files=[_dead_letter_rules(tmp_path / "alerts.yml")],
            alertmanager_port=delivery.alertmanager.port,
        )
        with Prometheus(config, tmp_path) as prometheus:
            # A letter counts as new once Prometheus has scraped the processor for a window.
            scraped = poll(
                lambda: prometheus.series(
                    f'up{{job="pas-kafka-llm-processor"}} offset {WINDOW} == 1'
                ),
                timeout_s=60,
                interval_s=0.2,
            )
            assert scraped, prometheus.logs()
            asyncio.run(_publish(kafka_bootstrap, documents, b"{this is not a document"))
            messages = poll(
                lambda: _messages(delivery.webhook, "PASDeadLettersGrowing"),
                timeout_s=90,
                interval_s=0.2,
            )
            firing = [
                a
                for a in delivery.alertmanager.alerts()
                if a["labels"]["alertname"] == "PASDeadLettersGrowing"
            ]
    finally:
        processor.stop()

    assert messages, delivery.alertmanager.logs()
    [message] = messages[:1]
    assert message["title"] == "[FIRING:1] PASDeadLettersGrowing on kafka_llm_processor"
    text = message["text"]
    assert "*Documents dead-lettered on financial-documents-dlq (invalid_document)* (warning)" in (
        text
    )
    labels = re.search(r"Labels:(.*)", text)
    assert labels is not None, text
    assert set(labels[1].split()) == {
        "alertname=PASDeadLettersGrowing",
        "dlq=financial-documents-dlq",
        "job=pas-kafka-llm-processor",
        "pas_service=kafka_llm_processor",
        "reason=invalid_document",
        "severity=warning",
        "system=pas",  # prometheus.yml's external label, on everything it sends
    }
    assert "Runbook: docs/operations.md#dead-letters" in text
    assert [a["labels"]["reason"] for a in firing] == ["invalid_document"]
    # A warning goes to the chat only.
    assert not any("PASDeadLettersGrowing" in mail for _, mail in delivery.smtp.messages)


async def _publish(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"poison")
    finally:
        await producer.stop()


def _alert(name: str, severity: str, service: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus posts it: firing since a minute ago, for an hour."""
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": severity, "pas_service": service, **labels},
        "annotations": {
            "summary": f"{name} {severity} on {service}",
            "runbook_url": "docs/operations.md#service-down",
        },
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def _plain_text(mail: str) -> str:
    """The text/plain part of a MIME message, decoded."""
    for part in email.message_from_string(mail, policy=email.policy.default).walk():
        if part.get_content_type() == "text/plain":
            text: str = part.get_content()
            return text
    return ""


def test_routing_and_inhibition(delivery: Delivery) -> None:
    """A service down silences its other alerts; a critical alert silences the warning of the
    same alert on the same thing, not the warning on another; critical alerts go by e-mail."""
    sources = [
        _alert("PASServiceDown", "critical", "registry_t"),
        _alert("PASProviderBudget", "critical", "router_t", provider="openai"),
    ]
    targets = [
        _alert("PASConsumerLagRising", "warning", "registry_t"),
        _alert("PASProviderBudget", "warning", "router_t", provider="openai"),
        _alert("PASProviderBudget", "warning", "router_t", provider="anthropic"),
    ]

    def delivered() -> set[str]:
        return {
            match
            for _, body in list(delivery.webhook.received)
            for attachment in body.get("attachments", [])
            for match in re.findall(r"\*(\w+ \w+ on \w+_t)\*", attachment["text"])
        } | {
            f"{match} (mail)"
            for _, text in list(delivery.smtp.messages)
            for match in re.findall(r"\*(\w+ \w+ on \w+_t)\*", _plain_text(text))
        }

    expected = {
        "PASServiceDown critical on registry_t",
        "PASServiceDown critical on registry_t (mail)",
        "PASProviderBudget critical on router_t",
        "PASProviderBudget critical on router_t (mail)",
        "PASProviderBudget warning on router_t",  # anthropic's: no critical alert of its own
    }
    # Alertmanager's inhibitor and dispatcher read new alerts independently, so a target that
    # arrives with its source in one post can be sent before the source is seen (under load,
    # within group_wait). Prometheus has the same race; the rule is judged once sources are known.
    delivery.alertmanager.post(sources)
    poll(lambda: {e for e in expected if "critical" in e} <= delivered(), interval_s=0.2)
    delivery.alertmanager.post(targets)

    def inhibited() -> set[tuple[tuple[str, str], ...]]:
        return {
            tuple(sorted(a["labels"].items()))
            for a in delivery.alertmanager.alerts()
            if a["status"]["inhibitedBy"]
        }

    poll(lambda: expected <= delivered() and len(inhibited()) == 2, interval_s=0.2)

    assert delivered() == expected, delivery.alertmanager.logs()
    assert {dict(labels)["alertname"] for labels in inhibited()} == {
        "PASConsumerLagRising",
        "PASProviderBudget",
    }
    recipients = {r for recipients, _ in delivery.smtp.messages for r in recipients}
    assert recipients == {"pas-oncall@example.org"}
