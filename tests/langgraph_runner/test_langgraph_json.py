"""``langgraph.json`` lists every shipped graph the way ``langgraph dev`` loads it: a file path
and a variable, imported from the file (not as a package module)."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph.state import CompiledStateGraph

from services.langgraph_runner.catalog import Catalog, build_deps
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.workflows import BUILTIN_WORKFLOWS
from tests.langgraph_runner.test_workflows import DOCUMENT
from tests.support.processes import REPO_ROOT, ServiceProcess

CONFIG = REPO_ROOT / "langgraph.json"


def load_graph(reference: str) -> Any:
    """``./path/file.py:variable`` as langgraph-api resolves it: the file executed as a module
    of its own, then the variable read from it."""
    path, _, variable = reference.partition(":")
    assert path.startswith("./"), reference
    file = (REPO_ROOT / path).resolve()
    assert file.is_file(), reference
    name = f"studio_graph_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return getattr(module, variable)


@pytest.fixture
def studio_env(monkeypatch: pytest.MonkeyPatch, llm_process: ServiceProcess) -> None:
    monkeypatch.setenv("PAS_ENV_FILE", "")
    monkeypatch.setenv("RUNNER_LLM_URL", llm_process.url)


def test_the_config_lists_every_shipped_workflow_and_the_project() -> None:
    config = json.loads(CONFIG.read_text())

    assert set(config["graphs"]) == {spec.id for spec in BUILTIN_WORKFLOWS}
    assert config["dependencies"] == ["."]
    assert config["python_version"] == "3.11"


def test_every_listed_graph_loads_as_the_runner_s_graph(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAS_ENV_FILE", "")
    settings = RunnerSettings()
    catalog = Catalog.from_settings(settings, build_deps(settings))

    for graph_id, reference in json.loads(CONFIG.read_text())["graphs"].items():
        graph = load_graph(reference)

        assert isinstance(graph, CompiledStateGraph), reference
        assert graph.name == graph_id
        assert graph.checkpointer is None  # the LangGraph server brings its own
        drawing = graph.get_graph()
        runner_drawing = catalog.get(graph_id).graph.get_graph()
        assert set(drawing.nodes) == set(runner_drawing.nodes)
        assert {(e.source, e.target) for e in drawing.edges} == {
            (e.source, e.target) for e in runner_drawing.edges
        }


@pytest.mark.usefixtures("studio_env")
async def test_a_studio_graph_runs_without_the_runner() -> None:
    reference = json.loads(CONFIG.read_text())["graphs"]["document_analysis"]
    graph = load_graph(reference)

    state = await graph.ainvoke(
        {"title": DOCUMENT["title"], "doc_type": "", "content": DOCUMENT["content"]}
    )

    assert state["result"]["sentiment"] in {"positive", "neutral", "negative"}
    assert state["result"]["word_count"] == len(DOCUMENT["content"].split())
