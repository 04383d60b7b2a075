"""document_analysis holds its texts' numbers to the document's: the schema it sends says so,
and an answer from a model that ignores the schema's pattern is checked, asked once more, and
marked ungrounded if it stays so.

The model is a stand-in for Ollama, which cannot run here: it answers ``POST /api/chat`` in
Ollama's documented wire format with scripted answers, and records what it was sent
(``tests/support/ollama_chat.py``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from libs.common.grounded_text import text_pattern
from libs.common.grounding import quantities_as_written
from services.langgraph_runner.workflows.document_analysis import SUMMARY, analysis_schema
from tests.support.asgi_server import serve_asgi
from tests.support.ollama_chat import OllamaChat

DOCUMENT = {
    "title": "Apple fourth quarter results",
    "content": "Apple reported quarterly revenue of $94.9 billion, up 6 percent year over year.",
}
GROUNDED: dict[str, Any] = {
    "summary": "Revenue rose 6 percent to $94.9 billion.",
    "sentiment": "positive",
    "key_points": ["Revenue of $94.9 billion"],
}
INVENTED: dict[str, Any] = {**GROUNDED, "summary": "Revenue rose 9 percent to $94.9 billion."}


async def analyse(
    make_runner: Callable[..., Any], model: OllamaChat, document: dict[str, str] = DOCUMENT
) -> dict[str, Any]:
    with serve_asgi(model) as url:
        runner = await make_runner(llm_url=url)
        response = await runner.post(
            "/workflows/document_analysis/runs?wait=true", json={"input": document}
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "success", result["error"]
    return result


async def test_the_schema_sent_lets_texts_write_only_the_documents_numbers(
    make_runner: Callable[..., Any],
) -> None:
    model = OllamaChat([json.dumps(GROUNDED)])

    result = await analyse(make_runner, model)

    assert result["path"] == ["analyse", "structure"]
    assert result["output"]["status"] == "ok"
    schema = model.requests[0]["format"]
    written = quantities_as_written(f"{DOCUMENT['title']}\n{DOCUMENT['content']}")
    assert written == ["$94.9 billion", "6 percent"]
    summary = schema["properties"]["summary"]
    assert summary["pattern"] == text_pattern(written, **SUMMARY)
    assert re.fullmatch(summary["pattern"], GROUNDED["summary"])
    assert not re.fullmatch(summary["pattern"], INVENTED["summary"])
    # Key points copy the content's clauses, from the first.
    start = schema["properties"]["key_points"]
    first = schema["$defs"][start["$ref"].removeprefix("#/$defs/")]
    assert first["properties"]["point"]["enum"] == [DOCUMENT["content"].removesuffix(".")]


async def test_key_points_chosen_in_a_chain_are_read_in_order(
    make_runner: Callable[..., Any],
) -> None:
    chained = {
        **GROUNDED,
        "key_points": {"point": "Revenue of $94.9 billion", "next": {"point": "Up 6 percent"}},
    }
    model = OllamaChat([json.dumps(chained)])

    result = await analyse(make_runner, model)

    assert result["output"]["status"] == "ok"
    assert result["output"]["key_points"] == ["Revenue of $94.9 billion", "Up 6 percent"]


async def test_an_invented_number_is_asked_about_once_more(
    make_runner: Callable[..., Any],
) -> None:
    model = OllamaChat([json.dumps(INVENTED), json.dumps(GROUNDED)])

    result = await analyse(make_runner, model)

    assert result["path"] == ["analyse", "structure"] * 2
    assert result["output"]["status"] == "ok"
    assert result["output"]["summary"] == GROUNDED["summary"]
    strict = model.requests[1]["messages"][0]["content"]
    # Stricter, and told what was wrong with the first answer.
    assert strict.endswith(
        "copied exactly as written. Your last answer got these wrong: 9 percent."
    )


async def test_a_number_still_invented_is_named_and_never_ok(
    make_runner: Callable[..., Any],
) -> None:
    model = OllamaChat([json.dumps(INVENTED)])

    result = await analyse(make_runner, model)

    assert result["path"] == ["analyse", "structure"] * 2
    assert result["output"]["status"] == "ungrounded"
    assert result["output"]["ungrounded"] == ["9 percent"]
    assert len(model.requests) == 2


async def test_a_number_said_of_another_metric_is_asked_about_and_named(
    make_runner: Callable[..., Any],
) -> None:
    """The schema lets the summary write 12 percent (the document has it), not say what of:
    12 percent given to revenue, where the document's is earnings per share's."""
    document = {
        "title": "Apple fourth quarter results",
        "content": "Apple reported quarterly revenue of $94.9 billion, up 6 percent year over "
        "year, and diluted earnings per share of $1.64, up 12 percent.",
    }
    misattributing = {**GROUNDED, "summary": "Revenue rose 12 percent to $94.9 billion."}
    model = OllamaChat([json.dumps(misattributing)])

    result = await analyse(make_runner, model, document)

    assert result["path"] == ["analyse", "structure"] * 2
    assert result["output"]["status"] == "ungrounded"
    assert result["output"]["ungrounded"] == [
        "12 percent said of revenue; the document's is of earnings per share"
    ]
    told = model.requests[1]["messages"][0]["content"]
    assert told.endswith(
        "got these wrong: 12 percent said of revenue; the document's is of earnings per share."
    )


async def test_a_point_said_again_is_kept_once(make_runner: Callable[..., Any]) -> None:
    repeated = {
        **GROUNDED,
        "key_points": ["Revenue of $94.9 billion", " revenue of $94.9 billion", "Up 6 percent"],
    }
    model = OllamaChat([json.dumps(repeated)])

    result = await analyse(make_runner, model)

    assert result["output"]["key_points"] == ["Revenue of $94.9 billion", "Up 6 percent"]


def test_key_points_start_at_the_lede_and_say_one_more_at_least() -> None:
    content = "Revenue rose 6 percent. Margins widened. Costs fell. The dividend was raised."
    schema = analysis_schema(content, content)

    start = schema["properties"]["key_points"]
    definitions = schema["$defs"]
    first = definitions[start["$ref"].removeprefix("#/$defs/")]
    assert first["properties"]["point"]["enum"] == ["Revenue rose 6 percent"]
    assert "next" in first["required"]
    later = [
        definitions[ref["$ref"].removeprefix("#/$defs/")]
        for ref in first["properties"]["next"]["anyOf"]
    ]
    assert [d["properties"]["point"]["enum"][0] for d in later] == [
        "Margins widened",
        "Costs fell",
        "The dividend was raised",
    ]
    assert all("next" not in d["required"] for d in later)
