"""Which failures a node retries, and how a model's JSON answer is read."""

from __future__ import annotations

from typing import Literal

import httpx
import msgspec
import ollama
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
        (ollama.ResponseError("overloaded", 503), True),
        (ollama.ResponseError("failed mid-stream"), True),
        (ollama.ResponseError("bad request", 400), False),
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
