"""The graphs ``langgraph.json`` lists, for LangGraph Studio (``bash scripts/langgraph_dev.sh``).

Built from the ``RUNNER_*`` environment (and ``.env``) like the runner's, so their LLM nodes
reach the same model; compiled without a checkpointer, because the LangGraph server brings its
own. Studio runs them without the runner's context: prompts and model are the defaults, and the
input is the graph's state (what each workflow's ``initial_state`` builds from the runner's
input).
"""

from __future__ import annotations

from libs.common.settings import load_settings_or_exit
from services.langgraph_runner.catalog import build_deps
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.workflows import BUILTIN_WORKFLOWS

_deps = build_deps(load_settings_or_exit(RunnerSettings))
_graphs = {spec.id: spec.build(_deps).compile(name=spec.id) for spec in BUILTIN_WORKFLOWS}

document_analysis = _graphs["document_analysis"]
orchestrator_worker = _graphs["orchestrator_worker"]
supervisor = _graphs["supervisor"]
network = _graphs["network"]
tool_agent = _graphs["tool_agent"]
