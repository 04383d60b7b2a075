"""What a failing upstream may do to a routed call: how its failure reaches the caller, and
whether the next candidate is asked.

The providers are OpenAI-compatible servers played by fakes speaking OpenAI's documented
chat-completions wire format (``tests/support/openai_responder.py``, and
:class:`ScriptedStream` here for streams sent byte for byte), and once Anthropic, played by
a fake sending its documented Messages stream events; each made to fail in the way under
test: an error page, a status, a stream cut short.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.provider_router.conftest import ask, one_provider, provider_toml, providers_file
from tests.support.asgi_server import read_body, serve_asgi
from tests.support.openai_responder import OpenAIResponder

BROKEN = "broken/broken-model"
BACKUP = "backup/backup-model"


def broken_then_backup(tmp_path: Path, broken_url: str, backup_url: str) -> str:
    """``broken`` and ``backup``, both serving capability ``faults``; the ``cost`` strategy
    asks ``broken`` (the cheaper) first."""
    return providers_file(
        tmp_path,
        provider_toml("broken", f"{broken_url}/v1", "broken-model", "faults", input_per_1k=0.1),
        backup_provider(backup_url),
    )


def backup_provider(url: str) -> str:
    """``backup``, OpenAI-compatible at ``url``, serving ``faults`` at 1 USD per 1k tokens."""
    return provider_toml("backup", f"{url}/v1", "backup-model", "faults")


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "error_body",
    [NGINX_502, "サーバーが過負荷です".encode()],
    ids=["html-with-crlf", "beyond-latin-1"],
)
async def test_a_fallback_reason_from_any_error_body_is_a_safe_header(
    make_router: Any, tmp_path: Path, stream: bool, error_body: bytes
) -> None:
    """The first candidate answers 502 with a proxy's HTML page (CRLFs) or 503 with text
    beyond Latin-1; the backup answers, and its answer reaches the caller with the reason in
    ``X-PAS-Fallback-Reasons`` as printable ASCII on one line."""
    status = 502 if error_body == NGINX_502 else 503
    broken = OpenAIResponder("broken-model", reply=(status, error_body))
    backup = OpenAIResponder("backup-model")
    with serve_asgi(broken) as broken_url, serve_asgi(backup) as backup_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, broken_url, backup_url),
            retries=0,
        )
        answer = await router.post(
            "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
        )

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-pas-candidate"] == BACKUP
    reasons = answer.headers["x-pas-fallback-reasons"]
    assert reasons.startswith(f"{BROKEN}: answered {status}: ")
    assert all(" " <= c <= "~" for c in reasons), reasons
    assert "  " not in reasons
    assert len(reasons) <= 2000


REVOKED_KEY = json.dumps(
    {
        "error": {
            "message": "Incorrect API key provided: sk-abc***xyz",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
).encode()


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (401, {}),
        (403, {}),
        (404, {}),
        (301, {"location": "https://api.example.com/v1/chat/completions"}),
    ],
    ids=["revoked-key", "forbidden", "retired-model", "redirect"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_candidate_refusing_the_router_falls_back_and_counts_against_it(
    make_router: Any, tmp_path: Path, status: int, headers: dict[str, str], stream: bool
) -> None:
    """A refusal of the router rather than of the request (a revoked key, a forbidden
    project, a retired model, an ``http://`` address of an ``https`` API) is the candidate's
    entry's fault: the backup answers, the refusing candidate is asked once a call (no
    retry), and its circuit opens after ``breaker_failures`` of them."""
    broken = OpenAIResponder("broken-model", reply=(status, REVOKED_KEY), reply_headers=headers)
    backup = OpenAIResponder("backup-model")
    with serve_asgi(broken) as broken_url, serve_asgi(backup) as backup_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, broken_url, backup_url),
            retries=2,
            breaker_failures=2,
            breaker_cooldown_s=600,
        )
        answers = [
            await router.post(
                "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
            )
            for _ in range(3)
        ]
        rows = {c["id"]: c for c in (await router.get("/providers")).json()["candidates"]}

    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
    assert [a.headers["x-pas-candidate"] for a in answers] == [BACKUP] * 3
    assert f"{BROKEN}: answered {status}" in answers[0].headers["x-pas-fallback-reasons"]
    assert len(broken.requests) == 2  # once a call, until its circuit opened
    assert rows[BROKEN]["circuit"] == "open"
    assert rows[BROKEN]["failed"] == 2


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_every_candidate_refusing_the_router_is_a_502_naming_them(
    make_router: Any, tmp_path: Path, stream: bool
) -> None:
    """Both candidates' keys are revoked: the caller gets a 502 naming each candidate and
    its answer, never the upstreams' 401 (which would read as the router refusing the
    caller's own token)."""
    first = OpenAIResponder("broken-model", reply=(401, REVOKED_KEY))
    second = OpenAIResponder("backup-model", reply=(401, REVOKED_KEY))
    with serve_asgi(first) as first_url, serve_asgi(second) as second_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, first_url, second_url),
            retries=0,
        )
        answer = await router.post(
            "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
        )

    assert answer.status_code == 502, answer.text
    assert "www-authenticate" not in answer.headers
    detail = answer.json()["detail"]
    assert f"{BROKEN}: answered 401" in detail
    assert f"{BACKUP}: answered 401" in detail


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_refusal_of_the_request_itself_is_passed_on_without_fallback(
    make_router: Any, tmp_path: Path, status: int
) -> None:
    """A request the candidate finds malformed, too large or unprocessable would be refused
    by any: the caller gets that status and body, the backup is not asked, and the
    candidate, which answered, is not counted as failing."""
    error = b'{"error": {"message": "bad request", "type": "invalid_request_error"}}'
    broken = OpenAIResponder("broken-model", reply=(status, error))
    backup = OpenAIResponder("backup-model")
    with serve_asgi(broken) as broken_url, serve_asgi(backup) as backup_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, broken_url, backup_url),
            retries=0,
        )
        answer = await router.post("/v1/chat/completions", json=ask("faults", strategy="cost"))
        rows = {c["id"]: c for c in (await router.get("/providers")).json()["candidates"]}

    assert answer.status_code == status
    assert "bad request" in answer.json()["detail"]
    assert backup.requests == []
    assert rows[BROKEN]["failed"] == 0


def chunk_event(text: str) -> bytes:
    """One OpenAI chat-completion chunk carrying ``text``, as a whole SSE event."""
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "broken-model",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


class ScriptedStream:
    """An OpenAI-compatible server (pure ASGI) whose every streamed answer is ``pieces``, sent
    as they are, then either the end of the body (``then="end"``) or a dropped connection
    (``then="break"``): what a worker restart or an idle-cutting proxy does to a stream."""

    def __init__(self, pieces: list[bytes], then: Literal["end", "break"]) -> None:
        self.pieces = pieces
        self.then = then

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
        for piece in self.pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        if self.then == "break":
            raise ConnectionResetError("the scripted stream broke on purpose")
        await send({"type": "http.response.body", "body": b""})


async def streamed_from(
    make_router: Any,
    tmp_path: Path,
    upstream: ScriptedStream | OpenAIResponder,
    *,
    stream: bool = True,
) -> tuple[Any, dict[str, Any], OpenAIResponder]:
    """A chat (a stream unless ``stream=False``) asked of a router whose first candidate is
    ``upstream`` and whose second is a working backup: the answer, the first candidate's row
    of ``/providers`` after it, and the backup (what it was asked)."""
    backup = OpenAIResponder("backup-model")
    with serve_asgi(upstream) as broken_url, serve_asgi(backup) as backup_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, broken_url, backup_url),
            retries=0,
        )
        answer = await router.post(
            "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
        )
        rows = {c["id"]: c for c in (await router.get("/providers")).json()["candidates"]}
    return answer, rows[BROKEN], backup


def events_of(answer: Any) -> list[str]:
    """The ``data`` of each event of a streamed answer, split at the blank lines."""
    return [event.removeprefix("data: ") for event in answer.text.split("\n\n") if event.strip()]


async def test_a_stream_broken_mid_event_sends_whole_events_then_the_error(
    make_router: Any, tmp_path: Path
) -> None:
    """The upstream sends a chunk, half of the next, and drops the connection: the client
    gets the whole chunk, then the ``error`` event and ``[DONE]`` as events of their own
    (each parses), never the half; the candidate is counted as failed."""
    half = chunk_event("and bonds")[:40]
    answer, row, _ = await streamed_from(
        make_router, tmp_path, ScriptedStream([chunk_event("Rates "), half], then="break")
    )

    events = events_of(answer)
    assert answer.status_code == 200
    assert answer.headers["x-pas-candidate"] == BROKEN
    assert events[-1] == "[DONE]"
    parsed = [json.loads(event) for event in events[:-1]]
    assert [p["choices"][0]["delta"]["content"] for p in parsed[:-1]] == ["Rates "]
    assert "failed mid-stream" in parsed[-1]["error"]["message"]
    assert row["failed"] == 1


async def test_a_stream_ended_before_done_is_a_break_not_a_success(
    make_router: Any, tmp_path: Path
) -> None:
    """The upstream sends whole chunks and ends its body without ``data: [DONE]``: the
    answer is cut short, so the client is told with an ``error`` event and ``[DONE]``, and
    the candidate is counted as failed, not as having served."""
    answer, row, _ = await streamed_from(
        make_router,
        tmp_path,
        ScriptedStream([chunk_event("Rates "), chunk_event("and ")], then="end"),
    )

    events = events_of(answer)
    assert answer.status_code == 200
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert "ended the stream before [DONE]" in error["message"]
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-2]] == [
        "Rates ",
        "and ",
    ]
    assert row["failed"] == 1
    assert row["served"] == 0


async def test_a_whole_stream_split_anywhere_is_passed_on_whole(
    make_router: Any, tmp_path: Path
) -> None:
    """The upstream's events come split at odd places (an event across pieces, two in one,
    ``[DONE]`` without its blank line before the end): the client gets every event whole and
    the call is a success."""
    whole = chunk_event("Rates ") + chunk_event("and ")
    pieces = [whole[:25], whole[25:90], whole[90:] + chunk_event("prices.")[:10]]
    pieces += [chunk_event("prices.")[10:], b"data: [DONE]\n"]
    answer, row, _ = await streamed_from(make_router, tmp_path, ScriptedStream(pieces, then="end"))

    events = events_of(answer)
    assert events[-1] == "[DONE]"
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1]] == [
        "Rates ",
        "and ",
        "prices.",
    ]
    assert row["failed"] == 0
    assert row["served"] == 1


def anthropic_event(event: dict[str, Any]) -> bytes:
    """One event of Anthropic's Messages stream, as its documented wire format sends it."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def anthropic_only(tmp_path: Path, url: str) -> str:
    """A providers file whose one candidate is Anthropic at ``url``, serving ``faults``."""
    return providers_file(tmp_path, anthropic_provider(url))


def anthropic_provider(url: str) -> str:
    """Anthropic at ``url`` (its key in ``PAS_TEST_ANTHROPIC_KEY``), serving ``faults``."""
    return provider_toml(
        "anthropic",
        url,
        "claude-sonnet-4-5",
        "faults",
        input_per_1k=0.003,
        output_per_1k=0.015,
        provider_lines='kind = "anthropic"\napi_key_env = "PAS_TEST_ANTHROPIC_KEY"',
    )


async def test_an_anthropic_stream_ended_before_message_stop_is_a_break(
    make_router: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anthropic, played by a fake speaking its Messages stream format, sends the start and
    one text delta, then ends its body without ``message_stop``: translated, the client gets
    the text, then an ``error`` event and ``[DONE]``; the candidate is counted as failed."""
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    start = {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 9}}
    delta = {"type": "text_delta", "text": "Coupons "}
    upstream = ScriptedStream(
        [
            anthropic_event({"type": "message_start", "message": start}),
            anthropic_event({"type": "content_block_delta", "index": 0, "delta": delta}),
        ],
        then="end",
    )
    with serve_asgi(upstream) as url:
        router = await make_router(
            use_registry=False, providers_file=anthropic_only(tmp_path, url), retries=0
        )
        answer = await router.post("/v1/chat/completions", json=ask("faults", stream=True))
        [row] = (await router.get("/providers")).json()["candidates"]

    events = events_of(answer)
    assert answer.status_code == 200
    assert events[-1] == "[DONE]"
    assert "ended the stream before [DONE]" in json.loads(events[-2])["error"]["message"]
    assert "Coupons " in [
        c["delta"].get("content") for e in events[:-2] for c in json.loads(e)["choices"]
    ]
    assert row["failed"] == 1
    assert row["served"] == 0


def usage_only(events: list[str]) -> list[dict[str, Any]]:
    """The chunks of ``events`` that carry the usage and no choice."""
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return [c for c in chunks if c.get("choices") == [] and c.get("usage")]


@pytest.mark.parametrize(
    ("stream_options", "usage_chunks"),
    [
        (None, 0),
        ({"include_usage": False}, 0),
        ({"include_obfuscation": False}, 0),
        ({"include_usage": True}, 1),
    ],
    ids=["not-asked", "declined", "other-option", "asked"],
)
async def test_the_usage_chunk_is_passed_on_only_when_the_caller_asked(
    make_router: Any, tmp_path: Path, stream_options: dict[str, Any] | None, usage_chunks: int
) -> None:
    """The router asks the upstream for the usage whatever the caller asked (it counts the
    call's tokens and cost from it), merged into the caller's ``stream_options``; the caller
    gets the usage-only chunk (``choices: []``) only if it asked for it, as OpenAI sends it."""
    upstream = OpenAIResponder("plain")
    with serve_asgi(upstream) as url:
        config = one_provider(tmp_path, url, "plain", "faults")
        router = await make_router(use_registry=False, providers_file=config, retries=0)
        extra = {} if stream_options is None else {"stream_options": stream_options}
        answer = await router.post("/v1/chat/completions", json=ask("faults", stream=True, **extra))
        costs = (await router.get("/costs")).json()

    events = events_of(answer)
    assert answer.status_code == 200
    assert len(usage_only(events)) == usage_chunks
    others = [json.loads(e) for e in events[:-1] if not usage_only([e])]
    assert all(chunk["choices"] for chunk in others)
    sent = upstream.requests[-1]["stream_options"]
    assert sent == {**(stream_options or {}), "include_usage": True}
    assert costs["by_provider"]["plain"]["prompt_tokens"] == 11


@pytest.mark.parametrize(("include_usage", "usage_chunks"), [(False, 0), (True, 1)])
async def test_anthropic_usage_is_passed_on_only_when_the_caller_asked(
    make_router: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    include_usage: bool,
    usage_chunks: int,
) -> None:
    """Anthropic, played by a fake sending its documented Messages stream events, says the
    usage in ``message_start`` and ``message_delta``: translated, the caller gets it as
    OpenAI's usage-only chunk only if it asked (``stream_options.include_usage``); the router
    counts it either way."""
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    start = {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 9}}
    text = {"type": "text_delta", "text": "Hi"}
    end = {"stop_reason": "end_turn"}
    sequence: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_delta", "index": 0, "delta": text},
        {"type": "message_delta", "delta": end, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ]
    upstream = ScriptedStream([anthropic_event(e) for e in sequence], then="end")
    with serve_asgi(upstream) as url:
        router = await make_router(
            use_registry=False, providers_file=anthropic_only(tmp_path, url), retries=0
        )
        answer = await router.post(
            "/v1/chat/completions",
            json=ask("faults", stream=True, stream_options={"include_usage": include_usage}),
        )
        costs = (await router.get("/costs")).json()

    events = events_of(answer)
    assert answer.status_code == 200
    assert events[-1] == "[DONE]"
    assert len(usage_only(events)) == usage_chunks
    others = [json.loads(e) for e in events[:-1] if not usage_only([e])]
    assert [chunk["choices"][0]["finish_reason"] for chunk in others][-1] == "stop"
    assert costs["by_provider"]["anthropic"]["prompt_tokens"] == 9


async def _anthropic_answers_then_backup(
    make_router: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes, *, stream: bool
) -> tuple[Any, OpenAIResponder, dict[str, Any]]:
    """A chat through a router whose cheaper candidate, Anthropic's address, answers 200 with
    ``body``, with an OpenAI-compatible backup: the answer, the Anthropic fake, and the
    candidates' rows of ``/providers`` after it."""
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    portal = OpenAIResponder("claude-sonnet-4-5", reply=(200, body))
    backup = OpenAIResponder("backup-model")
    with serve_asgi(portal) as portal_url, serve_asgi(backup) as backup_url:
        config = providers_file(
            tmp_path, anthropic_provider(portal_url), backup_provider(backup_url)
        )
        router = await make_router(use_registry=False, providers_file=config, retries=2)
        answer = await router.post(
            "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
        )
        rows = {c["id"]: c for c in (await router.get("/providers")).json()["candidates"]}
    return answer, portal, rows


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "body",
    [b"<html><body>Down for maintenance</body></html>", b'{"type": "error"}', b"[1, 2]"],
    ids=["html", "not-a-message", "no-object"],
)
async def test_an_anthropic_2xx_that_is_no_message_falls_back(
    make_router: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes, stream: bool
) -> None:
    """Anthropic's address answers 200 with something that is not a Messages API message,
    nor, asked to stream, its event stream (a proxy's maintenance page, say): the backup, an
    OpenAI-compatible fake, answers, and the Anthropic candidate is counted as failed, asked
    once (not again: it would answer the same)."""
    answer, portal, rows = await _anthropic_answers_then_backup(
        make_router, tmp_path, monkeypatch, body, stream=stream
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-pas-candidate"] == BACKUP
    assert "answered 2xx with" in answer.headers["x-pas-fallback-reasons"]
    assert len(portal.requests) == 1
    assert rows["anthropic/claude-sonnet-4-5"]["failed"] == 1


NESTED_TOO_DEEP = b"[" * 5000 + b"]" * 5000
"""Deeper than msgspec follows (it raises RecursionError, not DecodeError)."""


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_an_anthropic_2xx_nested_too_deep_to_read_falls_back(
    make_router: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Anthropic's address answers 200 with a message, or a stream event, holding a value
    nested deeper than the router reads: unusable as a malformed one is (the backup answers,
    the reason says why), not an error out of the router's translation."""
    message = b'{"type": "message", "content": [], "extra": ' + NESTED_TOO_DEEP + b"}"
    body = b"event: message_start\ndata: " + message + b"\n\n" if stream else message
    answer, portal, rows = await _anthropic_answers_then_backup(
        make_router, tmp_path, monkeypatch, body, stream=stream
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-pas-candidate"] == BACKUP
    reasons = answer.headers["x-pas-fallback-reasons"]
    assert "answered 2xx with something that is not JSON (nested too deep to read)" in reasons
    assert len(portal.requests) == 1
    assert rows["anthropic/claude-sonnet-4-5"]["failed"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_an_answer_nested_too_deep_to_read_is_passed_on_as_it_came(
    make_router: Any, tmp_path: Path, stream: bool
) -> None:
    """An OpenAI-compatible candidate's answer (or its usage chunk) holds a value nested
    deeper than the router reads: the router passes OpenAI-compatible bytes on unparsed, so
    the caller gets them as sent and the call is served, its usage unread (as for usage it
    cannot read otherwise), not a 500 or a stream cut off by the router's own error."""
    extra = b', "extra": ' + NESTED_TOO_DEEP + b"}"
    usage = b'"usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}'
    if stream:
        usage_chunk = b'data: {"id": "chatcmpl-raw", "choices": [], ' + usage + extra + b"\n\n"
        pieces = [chunk_event("Rates "), usage_chunk, b"data: [DONE]\n\n"]
        upstream: ScriptedStream | OpenAIResponder = ScriptedStream(pieces, then="end")
    else:
        completion = json.dumps(
            {
                "id": "chatcmpl-raw",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Rates"}}],
            }
        ).encode()
        upstream = OpenAIResponder("broken-model", reply=(200, completion[:-1] + extra))
    answer, row, backup = await streamed_from(make_router, tmp_path, upstream, stream=stream)

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-pas-candidate"] == BROKEN
    assert NESTED_TOO_DEEP.decode() in answer.text
    if stream:
        events = events_of(answer)
        assert events[-1] == "[DONE]"
        assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Rates "
    assert row["served"] == 1
    assert row["failed"] == 0
    assert backup.requests == []
