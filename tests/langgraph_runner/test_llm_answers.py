"""Which failures a node retries, and how a model's JSON answer is read.

The runs here talk to a stand-in for Ollama, which cannot run here: it answers ``POST
/api/chat`` in Ollama's documented wire format (``tests/support/ollama_chat.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import httpx
import msgspec
import pytest

from libs.common.clients.llm_errors import (
    LLMRefused,
    LLMTimeout,
    LLMTransientError,
    LLMUnreachable,
    LLMUnusableAnswer,
)
from services.langgraph_runner.errors import AnswerUnusable
from services.langgraph_runner.llm import is_transient, parse_answer
from tests.support.asgi_server import serve_asgi
from tests.support.ollama_chat import OllamaChat


class Verdict(msgspec.Struct):
    label: Literal["buy", "sell"]
    reason: str


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://llm/api/chat")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(code))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (ConnectionError("gone"), True),
        (TimeoutError(), True),
        (LLMTransientError("503", status=503), True),
        (LLMTimeout("slow"), True),
        (LLMUnreachable("refused"), True),
        (_status_error(503), True),
        (_status_error(429), True),
        (_status_error(400), False),
        (LLMRefused("400", status=400), False),
        (LLMUnusableAnswer("no choices"), False),
        (AnswerUnusable("cut short"), False),
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_an_answer_is_read_into_its_type() -> None:
    assert parse_answer('{"label": "buy", "reason": "cheap"}', Verdict) == Verdict("buy", "cheap")


def test_a_raw_newline_inside_a_string_is_tolerated() -> None:
    assert parse_answer('{"label": "sell", "reason": "rich\nand late"}', Verdict).reason == (
        "rich\nand late"
    )


DEEP = "[" * 5000 + "]" * 5000
"""Deeper than msgspec and Python's ``json`` follow."""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"label": "buy", "reason": "cut sho', "JSON"),
        ('{"label": "hold", "reason": "r"}', "Verdict"),
        ("I think you should buy.", "JSON"),
        # Nested too deep to read (RecursionError in msgspec), and so after a raw newline
        # too (RecursionError in the lenient reader): unusable as malformed JSON is.
        ('{"label": "buy", "reason": "r", "more": ' + DEEP + "}", "nested too deep to read"),
        ('{"label": "buy", "reason": "r\n", "more": ' + DEEP + "}", "nested too deep to read"),
    ],
    ids=["cut-short", "wrong-value", "prose", "too-deep", "too-deep-after-a-newline"],
)
def test_an_unusable_answer_says_why(text: str, problem: str) -> None:
    with pytest.raises(AnswerUnusable, match=problem):
        parse_answer(text, Verdict)


async def _failed_run(make_runner: Callable[..., Any], server: OllamaChat) -> dict[str, Any]:
    """A document-analysis run, waited for, against ``server``: it failed."""
    with serve_asgi(server) as url:
        runner = await make_runner(llm_url=url, node_max_attempts=3)
        response = await runner.post(
            "/workflows/document_analysis/runs?wait=true",
            json={"input": {"title": "Results", "content": "Revenue rose 6 percent."}},
        )
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    assert run["status"] == "error"
    return run


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        # The wire answer itself, read inside the ollama library.
        (OllamaChat([], body=b"[" * 100_000), "unreadable: nested too deep to read"),
        (OllamaChat([], body=b"Service temporarily overloaded"), "unreadable: Expecting value"),
        # The message's content, the JSON the node asked for.
        (
            OllamaChat(['{"more": ' + DEEP + "}"]),
            "JSON (nested too deep to read)",
        ),
    ],
    ids=["body-too-deep", "body-not-json", "content-too-deep"],
)
async def test_an_unreadable_answer_fails_the_run_saying_so(
    make_runner: Callable[..., Any], server: OllamaChat, problem: str
) -> None:
    run = await _failed_run(make_runner, server)

    assert run["error"].startswith("node 'analyse' failed: AnswerUnusable: ")
    assert problem in run["error"]
    # Not worth retrying: the same answer would come back.
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "words", "error", "tried"),
    [
        (503, "server busy", "LLMTransientError", 3),
        (429, "slow down", "LLMTransientError", 3),
        # An error line inside the streamed answer: the model failed while answering.
        (200, "model runner crashed", "LLMTransientError", 3),
        (400, "invalid options", "LLMRefused", 1),
    ],
    ids=["busy", "too-many", "failed-mid-answer", "refused"],
)
async def test_an_error_ollama_answers_is_retried_only_when_transient(
    make_runner: Callable[..., Any], status: int, words: str, error: str, tried: int
) -> None:
    """Ollama's ``ResponseError`` leaves the call as PAS's error taxonomy, as the
    OpenAI-compatible path raises it, and the node retries what is transient."""
    server = OllamaChat([], status=status, body=json.dumps({"error": words}).encode() + b"\n")

    run = await _failed_run(make_runner, server)

    assert run["error"].startswith(f"node 'analyse' failed: {error}: "), run["error"]
    assert words in run["error"]  # Ollama's own
    assert len(server.requests) == tried
