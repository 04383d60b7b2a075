"""deploy/k8s: every overlay renders, validates against the Kubernetes schemas, matches the code.

``kubectl kustomize`` (Debian's kubernetes-client) renders each overlay; skipped where kubectl
is absent. ``kubernetes-validate`` checks every rendered object offline, strictly (an unknown
field is an error), against the newest Kubernetes release it bundles. The drift tests then read
the rendered objects: a Deployment and a Service per PAS service with the entrypoint's port,
probes on /health, resource requests, only variables the service reads, Secrets' keys that
secrets.env.example lists, and URLs that name Services on their ports.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from libs.common.constants import TOPIC_FINANCIAL_DOCUMENTS, TOPIC_WORKFLOW_EVENTS
from libs.common.kafka.topics import PAS_TOPICS
from libs.common.settings import load_settings
from scripts.serve import SERVICES
from tests.deploy.code_facts import (
    READ_BY_ENTRYPOINT,
    env_file_keys,
    settings_class,
    variables_read,
)
from tests.support.processes import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SECRET_NAME = "pas-secrets"
_URL = re.compile(r"^https?://(?P<host>[a-z0-9-]+):(?P<port>\d+)(/\S*)?$")

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

Manifest = dict[str, Any]


@functools.cache
def rendered(overlay: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(overlay: str, kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in rendered(overlay) if doc["kind"] == kind}


def container(deployment: Manifest) -> Manifest:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def service_of(deployment: Manifest) -> str:
    env = {item["name"]: item for item in container(deployment)["env"]}
    value: str = env["SERVICE"]["value"]
    return value


def variables_set(overlay: str, deployment: Manifest) -> set[str]:
    """Every variable the Deployment's container gets: env entries and ConfigMap keys."""
    config_maps = of_kind(overlay, "ConfigMap")
    spec = container(deployment)
    names = {item["name"] for item in spec.get("env", [])}
    for source in spec.get("envFrom", []):
        names |= set(config_maps[source["configMapRef"]["name"]]["data"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly_against_the_kubernetes_schemas(overlay: str) -> None:
    version = kubernetes_validate.latest_version()
    kinds = set()
    for doc in rendered(overlay):
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])

    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    } <= kinds


def test_the_validation_rejects_an_unknown_field() -> None:
    """The control for the test above: strict validation is not a formality."""
    deployment = copy.deepcopy(next(iter(of_kind("prod", "Deployment").values())))
    container(deployment)["readinessProbe"]["httpGet"]["pth"] = "/health"

    with pytest.raises(kubernetes_validate.ValidationError, match="pth"):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pas_service_has_a_deployment_and_a_service_on_its_port(overlay: str) -> None:
    deployments = of_kind(overlay, "Deployment")
    services = of_kind(overlay, "Service")

    assert sorted(service_of(d) for d in deployments.values()) == sorted(SERVICES)
    for name, deployment in deployments.items():
        port = SERVICES[service_of(deployment)].port
        spec = container(deployment)
        assert spec["ports"] == [{"name": "http", "containerPort": port}], name
        assert services[name]["spec"]["ports"] == [
            {"name": "http", "port": port, "targetPort": "http"}
        ]
        assert (
            services[name]["spec"]["selector"]
            == deployment["spec"]["selector"]["matchLabels"]
            == {"app.kubernetes.io/name": name}
        )
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert spec[probe]["httpGet"] == {"path": "/health", "port": "http"}, (name, probe)
        assert set(spec["resources"]["requests"]) == {"cpu", "memory"}, name
        assert set(spec["resources"]["limits"]) == {"cpu", "memory"}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_set_only_variables_their_service_reads(overlay: str) -> None:
    for name, deployment in of_kind(overlay, "Deployment").items():
        service = service_of(deployment)
        unread = variables_set(overlay, deployment) - variables_read(service) - READ_BY_ENTRYPOINT
        assert not unread, f"{name} sets variables {service} never reads: {sorted(unread)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_from_the_secret_that_the_example_documents(overlay: str) -> None:
    documented = set(env_file_keys(K8S / "secrets.env.example"))
    used: set[str] = set()
    for deployment in of_kind(overlay, "Deployment").values():
        for item in container(deployment)["env"]:
            reference = item.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["name"] == SECRET_NAME
                assert reference["key"] == item["name"]
                used.add(reference["key"])

    assert used == documented
    assert SECRET_NAME not in of_kind(overlay, "Secret"), "no secret is rendered from the repo"
    for config_map in of_kind(overlay, "ConfigMap").values():
        secret_like = {key for key in config_map["data"] if key in documented}
        assert not secret_like, f"{config_map['metadata']['name']} holds {secret_like}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_urls_name_services_on_their_ports_and_externals_are_external(overlay: str) -> None:
    services = of_kind(overlay, "Service")
    ports = {
        name: SERVICES[service_of(deployment)].port
        for name, deployment in of_kind(overlay, "Deployment").items()
    }
    external = {
        name for name, service in services.items() if service["spec"].get("type") == "ExternalName"
    }
    values = [
        value
        for config_map in of_kind(overlay, "ConfigMap").values()
        for value in config_map["data"].values()
    ] + [
        line.partition("=")[2]
        for line in (K8S / "secrets.env.example").read_text().splitlines()
        if "://" in line and not line.startswith("#")
    ]

    assert external == {"kafka", "postgres", "ollama"}
    checked = 0
    for value in values:
        if match := _URL.match(value):
            checked += 1
            assert match["host"] in services, value
            if match["host"] not in external:
                assert int(match["port"]) == ports[match["host"]], value
        elif match := re.match(r"^postgres(?:ql)?://[^@]+@(?P<host>[\w-]+):5432/\w+$", value):
            checked += 1
            assert match["host"] == "postgres", value
    assert checked >= 10
    kafka = of_kind(overlay, "ConfigMap")
    bootstrap = {
        config_map["data"]["KAFKA_BOOTSTRAP_SERVERS"]
        for config_map in kafka.values()
        if "KAFKA_BOOTSTRAP_SERVERS" in config_map["data"]
    }
    assert bootstrap == {"kafka:9092"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processor_and_runner_scale_within_their_topics_partitions(overlay: str) -> None:
    deployments = of_kind(overlay, "Deployment")
    autoscalers = of_kind(overlay, "HorizontalPodAutoscaler")
    budgets = of_kind(overlay, "PodDisruptionBudget")
    partitions = {
        "kafka-llm-processor": PAS_TOPICS[TOPIC_FINANCIAL_DOCUMENTS],
        "langgraph-runner": PAS_TOPICS[TOPIC_WORKFLOW_EVENTS],
    }

    assert set(autoscalers) == set(budgets) == set(partitions)
    for name, most in partitions.items():
        target = autoscalers[name]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert "replicas" not in deployments[name]["spec"], "the autoscaler owns the count"
        assert (
            1
            <= autoscalers[name]["spec"]["minReplicas"]
            <= autoscalers[name]["spec"]["maxReplicas"]
            <= most
        )
        assert budgets[name]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_accepts_the_configuration_it_is_given(overlay: str) -> None:
    """Its settings load from exactly what the pod gets (the example Secret's values)."""
    secrets = dict(
        line.split("=", 1)
        for line in (K8S / "secrets.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    config_maps = of_kind(overlay, "ConfigMap")
    for name, deployment in of_kind(overlay, "Deployment").items():
        spec = container(deployment)
        environ: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            environ |= config_maps[source["configMapRef"]["name"]]["data"]
        for item in spec["env"]:
            reference = item.get("valueFrom", {})
            if "value" in item:
                environ[item["name"]] = item["value"]
            elif "secretKeyRef" in reference:
                environ[item["name"]] = secrets[reference["secretKeyRef"]["key"]]
            elif "fieldRef" in reference:
                environ[item["name"]] = f"{name}-5d8f9c7b6-x2x9q"  # a pod's name
        settings = load_settings(settings_class(service_of(deployment)), environ, env_file="")
        assert settings.redacted()["port"] == SERVICES[service_of(deployment)].port
