"""Debian's Prometheus and Alertmanager run against PAS processes, with the deploy/ configs.

The configs are the ones an operator runs (deploy/prometheus, deploy/alertmanager), moved to
where a test runs its services: each target's default port to the test's free port, scrapes
every second, rules and Alertmanager where the test puts them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from tests.support.processes import REPO_ROOT, answers_200, free_port

DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"

# Series Prometheus writes for every target itself, beside what the target exposes.
SCRAPE_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)


def prometheus_installed() -> bool:
    return bool(shutil.which("prometheus") and shutil.which("promtool"))


def alertmanager_installed() -> bool:
    return Path(ALERTMANAGER).is_file() and bool(shutil.which("amtool"))


def prometheus_config(
    ports: Mapping[int, int],
    *,
    rule_files: Iterable[Path] = (),
    alertmanager_port: int | None = None,
) -> str:
    """deploy/prometheus/prometheus.yml with each default port moved to where the test runs
    that service (services the test does not start point at a closed port, so they are down),
    scrapes and rule evaluations every second, the given rule files and Alertmanager."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    closed = free_port()

    def moved(target: str) -> str:
        host, port = target.rsplit(":", 1)
        assert host == "localhost", target
        return f"127.0.0.1:{ports.get(int(port), closed)}"

    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [moved(t) for t in static["targets"]]
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(path) for path in rule_files]
    if alertmanager_port is None:
        config.pop("alerting", None)
    else:
        targets = [f"127.0.0.1:{alertmanager_port}"]
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": targets}]}]
    text: str = yaml.safe_dump(config, sort_keys=False)
    return text


class PromQLError(AssertionError):
    """Prometheus refused a query (it does not parse, or cannot be evaluated)."""


class _MonitoringProcess:
    """One monitoring binary on a config file in ``workdir``, listening on a free loopback
    port; ready when its ``/-/ready`` answers, stopped on leaving the ``with`` block."""

    name: str  # also the config's and the log's file name

    def __init__(self, config_text: str, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._config = workdir / f"{self.name}.yml"
        self._config.write_text(config_text)
        self._process: subprocess.Popen[bytes] | None = None
        # One client for every query: a new one loads the CA bundle (40 ms of CPU).
        self._http = httpx.Client()

    def command(self) -> list[str]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        with (self.workdir / f"{self.name}.log").open("wb") as log:
            self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        if not answers_200(self._process, f"{self.url}/-/ready", timeout_s=30, interval_s=0.2):
            self.__exit__()
            raise RuntimeError(f"{self.name} did not start:\n{self.logs()}")
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()
        if self._process is not None:
            self._process.terminate()
            self._process.wait(15)
            self._process = None

    def logs(self) -> str:
        return (self.workdir / f"{self.name}.log").read_text(errors="replace")


class Prometheus(_MonitoringProcess):
    """One ``prometheus`` process on a config file; stopped on leaving the ``with`` block."""

    name = "prometheus"

    def __init__(self, config_text: str, workdir: Path) -> None:
        super().__init__(config_text, workdir)
        self.api = f"{self.url}/api/v1"

    def command(self) -> list[str]:
        return [
            "prometheus",
            f"--config.file={self._config}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def query(self, expr: str) -> list[Any]:
        """The instant query's result; PromQLError when Prometheus refuses the query."""
        body = self._http.get(f"{self.api}/query", params={"query": expr}, timeout=10).json()
        if body["status"] != "success":
            raise PromQLError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        result: list[Any] = body["data"]["result"]
        return result

    def format(self, expr: str) -> str:
        """The query as Prometheus prints it (parsed, so PromQLError if it does not parse)."""
        body = self._http.get(f"{self.api}/format_query", params={"query": expr}, timeout=10).json()
        if body["status"] != "success":
            raise PromQLError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        formatted: str = body["data"]
        return formatted

    def series(self, expr: str) -> list[Any]:
        """Like ``query``, but nothing (not an error) while Prometheus does not answer."""
        try:
            return self.query(expr)
        except httpx.HTTPError:
            return []


# -- the PromQL of the dashboards and the rules ------------------------------------------------


def dashboard_queries(names: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(where, expr) of every Prometheus target of the dashboards (all of them by default)."""
    paths = (
        sorted(DASHBOARDS.glob("*.json"))
        if names is None
        else [DASHBOARDS / name for name in names]
    )
    found = []
    for path in paths:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") == "prometheus":
                    found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def alert_rules(path: Path = ALERT_RULES) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]
    return rules


def rule_queries(path: Path = ALERT_RULES) -> list[tuple[str, str]]:
    """(where, expr) of every rule of ``path``."""
    found = []
    for rule in alert_rules(path):
        name = rule.get("alert") or rule["record"]
        severity = rule.get("labels", {}).get("severity", "")
        found.append((f"{path.name}: {name} {severity}".strip(), rule["expr"]))
    return found


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not inside a number or a duration (1e3, 15m), and not a function's name.
_NAMES = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
)


def metric_names(formatted_expr: str) -> set[str]:
    """The metric names a query selects, read from Prometheus's own formatting of it (one
    spelling for each construct); label names and values, functions and keywords are not."""
    text = _STRINGS.sub('""', formatted_expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    return {name for name in _NAMES.findall(text) if name.lower() not in _KEYWORDS}


def exposed_metric_names(metrics_text: str) -> set[str]:
    """Every series name a /metrics page exposes or will expose: the samples on it, and for
    each family declared (samples or not yet) the names its type gives its samples."""
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
            elif kind == "summary":
                names |= {f"{name}_sum", f"{name}_count", f"{name}_created"}
            elif kind == "counter":
                names.add(name.removesuffix("_total") + "_created")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


# -- Alertmanager --------------------------------------------------------------------------------


def alertmanager_config(workdir: Path, *, webhook_url: str, smtp_port: int) -> str:
    """deploy/alertmanager/alertmanager.yml delivering to the test's receivers: the webhook URL
    and an SMTP password in files as an operator has them, mail to a local SMTP server without
    TLS, and groups sent one second after their first alert instead of 30."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    webhook_file, password_file = workdir / "slack_webhook_url", workdir / "smtp_password"
    webhook_file.write_text(f"{webhook_url}\n")
    password_file.write_text("not-a-secret\n")
    config["global"] |= {
        "slack_api_url_file": str(webhook_file),
        "smtp_auth_password_file": str(password_file),
        "smtp_smarthost": f"127.0.0.1:{smtp_port}",
        "smtp_require_tls": False,
    }
    config["route"] |= {"group_wait": "1s", "group_interval": "1s"}
    config["templates"] = [str(ALERTMANAGER_CONFIG.parent / t) for t in config["templates"]]
    text: str = yaml.safe_dump(config, sort_keys=False)
    return text


class Alertmanager(_MonitoringProcess):
    """Debian's ``prometheus-alertmanager`` on a config file, alone (no cluster gossip), its
    state in ``workdir``; stopped on leaving the ``with`` block."""

    name = "alertmanager"

    def command(self) -> list[str]:
        return [
            ALERTMANAGER,
            f"--config.file={self._config}",
            f"--storage.path={self.workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._http.get(f"{self.url}/api/v2/alerts", timeout=5).json()
        return found

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Alerts as Prometheus sends them (``/api/v2/alerts``)."""
        self._http.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
