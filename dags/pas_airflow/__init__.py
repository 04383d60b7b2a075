"""PAS operators for Airflow 3: run a LangGraph workflow on the PAS runner, ask an LLM through
the provider router.

    from pas_airflow import LangGraphOperator, PASLLMOperator

Imported lazily (PEP 562), so ``pas_airflow.wire`` (no Airflow import) can be read by PAS's own
tests without Airflow installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LangGraphOperator": "pas_airflow.langgraph",
    "WorkflowResultTrigger": "pas_airflow.triggers",
    "PASLLMOperator": "pas_airflow.llm",
    "PASFailureNotifier": "pas_airflow.notify",
}

__all__ = ["LangGraphOperator", "PASFailureNotifier", "PASLLMOperator", "WorkflowResultTrigger"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pas_airflow' has no attribute {name!r}")
    return getattr(import_module(module), name)
