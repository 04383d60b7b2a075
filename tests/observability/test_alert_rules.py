"""The alert rules and the Alertmanager config as Prometheus's and Alertmanager's own tools read
them: they load, every rule has unit tests that pass, and every alert says how bad it is and
links to a section of docs/operations.md that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.processes import REPO_ROOT
from tests.support.prometheus import (
    ALERT_RULES,
    ALERTMANAGER_CONFIG,
    alert_rules,
    alertmanager_installed,
    exposed_metric_names,
    metric_names,
    prometheus_installed,
)

RULE_TESTS = sorted((ALERT_RULES.parent / "tests").glob("*.yml"))
OPERATIONS = REPO_ROOT / "docs" / "operations.md"

needs_prometheus = pytest.mark.skipif(
    not prometheus_installed(), reason="needs Debian's prometheus package (promtool)"
)


def _run(*command: str | Path) -> str:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


@needs_prometheus
def test_the_rules_load_and_the_prometheus_config_loads_them() -> None:
    rules = _run("promtool", "check", "rules", ALERT_RULES)
    config = _run("promtool", "check", "config", ALERT_RULES.parent / "prometheus.yml")

    assert f"SUCCESS: {len(alert_rules())} rules found" in rules
    assert "SUCCESS: 1 rule files found" in config


@needs_prometheus
@pytest.mark.parametrize("rule_test", RULE_TESTS, ids=[path.stem for path in RULE_TESTS])
def test_promtool_unit_tests_pass(rule_test: Path) -> None:
    out = _run("promtool", "test", "rules", rule_test)

    assert "SUCCESS" in out


def test_every_alert_rule_has_a_unit_test_that_sees_it_fire() -> None:
    """Each rule (an alert name at a severity, for one DLQ where there are several) is among
    the alerts some unit test expects, so that none is only loaded and never seen firing."""

    def key(name: str, labels: dict[str, str]) -> tuple[str, str, str]:
        return (name, labels["severity"], labels.get("dlq", ""))

    rules = {key(rule["alert"], rule["labels"]) for rule in alert_rules() if "alert" in rule}
    tested = {
        key(case["alertname"], alert["exp_labels"])
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        for alert in case.get("exp_alerts", [])
    }

    assert len(rules) == len(alert_rules())
    assert rules - tested == set()


def test_every_alert_has_a_severity_and_a_runbook_section_that_exists() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    problems = []
    for rule in alerts:
        where = f"{rule['alert']} ({rule['labels'].get('severity')})"
        if rule["labels"].get("severity") not in ("warning", "critical"):
            problems.append(f"{where}: severity must be warning or critical")
        url = rule["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if page != "docs/operations.md" or anchor not in anchors:
            problems.append(f"{where}: runbook_url {url!r} names no section of {OPERATIONS.name}")
        if not rule["annotations"].get("summary"):
            problems.append(f"{where}: no summary")

    assert len(alerts) >= 13
    assert problems == []


@pytest.mark.skipif(not alertmanager_installed(), reason="needs Debian's prometheus-alertmanager")
def test_amtool_accepts_the_alertmanager_config() -> None:
    out = _run("amtool", "check-config", ALERTMANAGER_CONFIG)

    assert "SUCCESS" in out
    assert "2 inhibit rules" in out
    assert "2 receivers" in out


def test_the_alertmanager_config_commits_no_secret() -> None:
    """The webhook URL and the SMTP password are read from files, never written here."""
    text = ALERTMANAGER_CONFIG.read_text()

    assert "slack_api_url_file:" in text
    assert "smtp_auth_password_file:" in text
    assert not re.search(r"^\s*(slack_api_url|smtp_auth_password|api_url):", text, re.M)
    assert "hooks.slack.com" not in text


def test_the_metric_names_of_a_query_are_read_without_labels_functions_or_durations() -> None:
    expr = (
        'sum by (job, reason) (increase(pas_a_total{reason=~"x|y", job!="z"}[15m])) > 0\n'
        "or (sum(pas_b) unless sum(pas_b offset 15m)) and on (job) (max by (job) (up) == 1)\n"
        "+ histogram_quantile(0.95, sum by (le) (rate(pas_c_bucket[5m]))) > bool 1e3\n"
        'or label_replace(vector(0), "dst", "$1", "src", "(.*)") + rec:rule:rate5m'
    )

    assert metric_names(expr) == {"pas_a_total", "pas_b", "up", "pas_c_bucket", "rec:rule:rate5m"}


def test_exposed_names_include_what_a_family_will_expose_before_its_first_sample() -> None:
    page = (
        "# HELP pas_x_total Things\n# TYPE pas_x_total counter\n"
        "# HELP pas_h_seconds Time\n# TYPE pas_h_seconds histogram\n"
        "# TYPE pas_g gauge\npas_g 3.0\n"
        'pas_untyped{a="b"} 1\n'
    )

    assert exposed_metric_names(page) == {
        "pas_x_total",
        "pas_x_created",
        "pas_h_seconds",
        "pas_h_seconds_bucket",
        "pas_h_seconds_sum",
        "pas_h_seconds_count",
        "pas_h_seconds_created",
        "pas_g",
        "pas_untyped",
    }
