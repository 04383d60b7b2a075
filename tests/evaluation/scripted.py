"""A scripted model for the evaluation's tests: it reads the question the evaluation sends (the
processor's system instruction, or a version's prompt, and the document's title) and answers
what the test planned for that document, so that every score the report gives is known."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from libs.common.schemas.documents import Task
from libs.evaluation.eval_set import DEFAULT_SET, EvalDocument, load
from services.kafka_llm_processor.prompts import INSTRUCTIONS, STRICTER

INVENTED = "$987.6 billion"
"""A figure no document of the set states."""
UNFOUNDED_REASON = "xyzzy plugh frobnicate quux"
"""A reason with no word of any document."""

Script = Callable[[EvalDocument, Task, bool, str], str]
"""(document, task, asked strictly, system prompt) -> the answer's text."""


def dev_documents() -> list[EvalDocument]:
    return load(DEFAULT_SET, "dev")


def task_of(system: str) -> Task:
    """The task a system prompt asks (the processor's instructions), by its wording."""
    for task, instruction in INSTRUCTIONS.items():
        if system.startswith(instruction):
            return task
    # A version's own prompt: by what it asks for.
    return (
        "key_figures"
        if "figures" in system
        else "sentiment"
        if "sentiment" in system
        else "summary"
    )


def strict(system: str, task: Task) -> bool:
    """Asked again: the stricter instruction (then what the last answer got wrong)."""
    return bool(STRICTER[task]) and STRICTER[task] in system


def scripted_model(script: Script) -> Callable[[dict[str, Any]], str]:
    """An ``OpenAIResponder(answer_for=...)`` that answers by ``script``."""
    by_title = {d.title: d for d in load(DEFAULT_SET, "all")}

    def answer_for(request: dict[str, Any]) -> str:
        system, user = (m["content"] for m in request["messages"])
        document = by_title[user.split("\n", 1)[0]]
        task = task_of(system)
        return script(document, task, strict(system, task), system)

    return answer_for


def figures(*pairs: tuple[str, str]) -> str:
    return json.dumps({"key_figures": [{"name": n, "value": v} for n, v in pairs]})


def expected_figures(document: EvalDocument) -> str:
    return figures(*((f.name, f.value) for f in document.expected_key_figures))


def sentiment(label: str, reason: str) -> str:
    return json.dumps({"label": label, "reason": reason})


def grounded_reason(document: EvalDocument) -> str:
    """The document's title (the grounding check reads title and content): its own words."""
    return document.title[:120].rsplit(" ", 1)[0] if len(document.title) > 120 else document.title
