"""What the code says about each PAS service, for the deployment drift tests.

The container entrypoint (``scripts/serve.py``) names each service's app, variable prefix and
default port; the start scripts say the same for one machine; each service's settings Struct
says which variables it reads. The tests check deploy/ against these, never against a list
written out a second time.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import msgspec

from libs.common.settings import BaseSettings, env_names
from scripts.serve import SERVICES
from tests.support.processes import REPO_ROOT

# Each service's settings Struct ("module:Class"). The tests check that it is the Struct the
# service's app module loads, with the prefix and default port scripts/serve.py uses.
SETTINGS = {
    "registry": "services.registry.settings:RegistrySettings",
    "provider_router": "services.provider_router.settings:RouterSettings",
    "llama31_8b": "services.llm.llama31_8b_service:Llama31Settings",
    "tinyllama": "services.llm.tinyllama_service:TinyLlamaSettings",
    "tlc_classifier": "services.llm.tlc_classifier_service:TLCSettings",
    "kafka_llm_processor": "services.kafka_llm_processor.settings:ProcessorSettings",
    "langgraph_runner": "services.langgraph_runner.settings:RunnerSettings",
    "versioning": "services.versioning.settings:VersioningSettings",
    "analytics": "services.analytics.settings:AnalyticsSettings",
}

# Read outside the settings Structs, in a container: which service to run (scripts/serve.py).
READ_BY_ENTRYPOINT = frozenset({"SERVICE"})


def settings_class(service: str) -> type[BaseSettings]:
    module, _, name = SETTINGS[service].partition(":")
    found = getattr(importlib.import_module(module), name)
    assert isinstance(found, type)
    assert issubclass(found, BaseSettings), SETTINGS[service]
    return found


@functools.cache
def variables_read(service: str) -> frozenset[str]:
    """Every variable ``service``'s settings read (own names and shared aliases)."""
    cls = settings_class(service)
    return frozenset(
        variable for field in msgspec.structs.fields(cls) for variable in env_names(cls, field.name)
    )


def app_module_path(service: str) -> Path:
    module = SERVICES[service].app.partition(":")[0]
    return REPO_ROOT / Path(*module.split(".")).with_suffix(".py")


def top_level_names(path: Path) -> set[str]:
    """Names a module binds at its top level (assignments, functions, classes, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
    return names


_PAS_START = re.compile(
    r'^pas_start (?P<name>\w+) (?P<app>[\w.]+:\w+) "\$\{(?P<prefix>\w+)PORT:-(?P<port>\d+)\}"',
    re.MULTILINE,
)
_LLM_SPEC = re.compile(
    r'"(?P<prefix>\w+_):(?P<name>\w+):(?P<module>[\w.]+):(?P<attr>\w+):(?P<port>\d+)"'
)


def start_script_services() -> dict[str, tuple[str, str, int]]:
    """name -> (app, prefix, port) as scripts/start_*.sh start each service."""
    found: dict[str, tuple[str, str, int]] = {}
    for script in sorted((REPO_ROOT / "scripts").glob("start_*.sh")):
        text = script.read_text()
        for match in _PAS_START.finditer(text):
            found[match["name"]] = (match["app"], match["prefix"], int(match["port"]))
        for match in _LLM_SPEC.finditer(text):
            app = f"{match['module']}:{match['attr']}"
            found[match["name"]] = (app, match["prefix"], int(match["port"]))
    return found


def env_file_keys(path: Path) -> list[str]:
    """The variable names an env file sets (comments and blank lines skipped)."""
    keys = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keys.append(stripped.partition("=")[0].strip())
    return keys
